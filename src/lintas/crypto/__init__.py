"""Keys for Lintas: Ed25519 signing keys, X25519 encryption keys, sealed at rest.

A pure library: no web, no database.
"""

from lintas.crypto.keys import (
    KeyMaterialError,
    KeyPair,
    fingerprint,
    generate,
    load_public,
    read_passphrase,
    seal_private,
    unseal_private,
)

__all__ = [
    "KeyMaterialError",
    "KeyPair",
    "fingerprint",
    "generate",
    "load_public",
    "read_passphrase",
    "seal_private",
    "unseal_private",
]
