"""Key generation, fingerprints, and passphrase-sealed private keys.

Private keys are stored only as JWE compact strings encrypted with
PBES2-HS512+A256KW (RFC 7518 §4.8) under an operator passphrase: a standard format
that any JOSE library can open, with a deliberately slow key derivation.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, OKPKey

KeyUse = Literal["sig", "enc"]
Curve = Literal["Ed25519", "X25519"]
CURVES: dict[str, Curve] = {"sig": "Ed25519", "enc": "X25519"}

PBES2_ALG = "PBES2-HS512+A256KW"
# OWASP (2023) recommends 210,000 iterations for PBKDF2-HMAC-SHA512.
PBES2_ITERATIONS = 210_000
# What a sealed key's header may ask for when it is opened: the count is read before the
# passphrase is checked, so an altered header could otherwise make a node spend minutes
# (joserfc refuses more than 300,000 itself) or open a key sealed too weakly to be ours.
PBES2_COUNTS = range(1_000, 300_001)
MIN_PASSPHRASE = 12


class KeyMaterialError(Exception):
    """A key or passphrase problem the operator must fix."""


@dataclass(frozen=True)
class KeyPair:
    use: KeyUse
    private: OKPKey

    @property
    def kid(self) -> str:
        return self.private.thumbprint()

    def public_jwk(self) -> dict[str, Any]:
        jwk = dict(self.private.as_dict(private=False))
        jwk["kid"] = self.kid
        jwk["use"] = self.use
        return jwk

    def public(self) -> OKPKey:
        return load_public(self.public_jwk(), self.use)


def generate(use: KeyUse) -> KeyPair:
    return KeyPair(use, OKPKey.generate_key(CURVES[use]))


def load_public(jwk: dict[str, Any], use: KeyUse) -> OKPKey:
    """Import a public JWK, insisting on the curve that `use` requires and no private part."""
    if not isinstance(jwk, dict):
        raise KeyMaterialError("a public key must be a JSON object (JWK)")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != CURVES[use]:
        raise KeyMaterialError(f"{use} key must be an OKP JWK on curve {CURVES[use]}")
    if "d" in jwk:
        raise KeyMaterialError("a public key file must not contain a private key ('d')")
    try:
        key = OKPKey.import_key({k: jwk[k] for k in ("kty", "crv", "x")})
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyMaterialError(f"invalid {use} public key: {exc}") from exc
    if "kid" in jwk and jwk["kid"] != key.thumbprint():
        raise KeyMaterialError("the key's 'kid' is not its RFC 7638 thumbprint")
    return key


def fingerprint(key: OKPKey) -> str:
    """The RFC 7638 SHA-256 thumbprint as grouped hex, for reading aloud and comparing."""
    import base64

    raw = base64.urlsafe_b64decode(key.thumbprint() + "=")
    hexed = raw.hex().upper()
    return " ".join(hexed[i : i + 4] for i in range(0, len(hexed), 4))


def _passphrase_key(passphrase: str) -> OctKey:
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyMaterialError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    return OctKey.import_key(passphrase.encode("utf-8"))


def seal_private(pair: KeyPair, passphrase: str) -> str:
    plaintext = json.dumps(pair.private.as_dict(private=True)).encode()
    header = {"alg": PBES2_ALG, "enc": "A256GCM", "p2c": PBES2_ITERATIONS, "cty": "jwk+json"}
    return jwe.encrypt_compact(
        header, plaintext, _passphrase_key(passphrase), algorithms=[PBES2_ALG, "A256GCM"]
    )


def _sealed_count(sealed: str) -> object:
    """The PBES2 count (p2c) in a sealed key's protected header, or None if unreadable."""
    try:
        segment = sealed.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return None
    return header.get("p2c") if isinstance(header, dict) else None


def unseal_private(sealed: str, use: KeyUse, passphrase: str) -> KeyPair:
    count = _sealed_count(sealed)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count not in PBES2_COUNTS):
        raise KeyMaterialError(
            f"sealed key: its PBES2 count (p2c) is {count!r}, outside "
            f"{PBES2_COUNTS.start:,}..{PBES2_COUNTS.stop - 1:,}: the stored key was altered "
            "or sealed by another tool")
    try:
        obj = jwe.decrypt_compact(
            sealed, _passphrase_key(passphrase), algorithms=[PBES2_ALG, "A256GCM"]
        )
    except JoseError as exc:
        raise KeyMaterialError("cannot unlock the private key: wrong passphrase?") from exc
    assert obj.plaintext is not None
    key = OKPKey.import_key(json.loads(obj.plaintext))
    if key.as_dict().get("crv") != CURVES[use]:
        raise KeyMaterialError(f"stored {use} key is not on curve {CURVES[use]}")
    return KeyPair(use, key)


def read_passphrase(env_prefix: str) -> str:
    """The passphrase from `<PREFIX>_PASSPHRASE_FILE` (preferred) or `<PREFIX>_PASSPHRASE`.

    A file (for example a systemd credential or a mounted secret) is preferred because
    the environment of a process is readable by the same user through /proc and is
    often captured by crash reporters; the variable exists for trials and CI.
    """
    file_var, env_var = f"{env_prefix}_PASSPHRASE_FILE", f"{env_prefix}_PASSPHRASE"
    if path := os.environ.get(file_var):
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise KeyMaterialError(
                f"{file_var}={path}: cannot read the passphrase file ({exc})"
            ) from exc
    elif os.environ.get(env_var) is not None:
        value = os.environ[env_var]
    else:
        raise KeyMaterialError(f"no passphrase: set {file_var} (preferred) or {env_var}")
    if len(value) < MIN_PASSPHRASE:
        raise KeyMaterialError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    return value
