"""The public-key file a node hands to the regional administrator for onboarding.

    {"member": "AUS", "keys": [<Ed25519 public JWK, use "sig">, <X25519 public JWK, use "enc">]}

Only public keys travel; a file holding a private key ('d') is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lintas.crypto import KeyMaterialError, load_public
from lintas.protocol.members import InvalidMemberCode, member_kind


class KeyFileError(ValueError):
    pass


@dataclass(frozen=True)
class MemberKeyFile:
    member: str
    sig: dict[str, Any]
    enc: dict[str, Any]


def member_key_document(member: str, sig: dict[str, Any], enc: dict[str, Any]) -> dict[str, Any]:
    return {"member": member, "keys": [sig, enc]}


def read_member_keys(path: Path) -> MemberKeyFile:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise KeyFileError(f"{path}: not JSON ({exc})") from exc
    return parse_member_keys(doc, str(path))


def parse_member_keys(doc: Any, where: str = "key file") -> MemberKeyFile:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyFileError(f"{where}: expected {{'member': CODE, 'keys': [sig JWK, enc JWK]}}")
    try:
        member_kind(str(doc.get("member")))
    except InvalidMemberCode as exc:
        raise KeyFileError(f"{where}: member: {exc}") from exc
    found: dict[str, dict[str, Any]] = {}
    for jwk in doc["keys"]:
        use = jwk.get("use") if isinstance(jwk, dict) else None
        if use not in ("sig", "enc") or use in found:
            raise KeyFileError(f"{where}: keys: one 'sig' and one 'enc' JWK are required")
        try:
            key = load_public(jwk, use)
        except KeyMaterialError as exc:
            raise KeyFileError(f"{where}: {use} key: {exc}") from exc
        found[use] = {**dict(key.as_dict(private=False)), "kid": key.thumbprint(), "use": use}
    if set(found) != {"sig", "enc"}:
        raise KeyFileError(f"{where}: keys: one 'sig' and one 'enc' JWK are required")
    return MemberKeyFile(member=doc["member"], sig=found["sig"], enc=found["enc"])
