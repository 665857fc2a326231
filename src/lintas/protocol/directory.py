"""The member directory: who is in the region and which keys are theirs, signed by the hub.

A node pins the hub's key at `lintas node init` and accepts a directory only if it
verifies with that key and is not older than the one it already holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lintas.crypto import KeyMaterialError, KeyPair, load_public
from lintas.crypto.keys import KeyUse
from lintas.protocol.envelope import SIGN_ALG, VERIFY_ALGS
from lintas.protocol.errors import DirectoryError, MalformedEnvelope
from lintas.protocol.timefmt import format_time, parse_time

DIRECTORY_TYP = "lintas-directory+jws"


@dataclass(frozen=True)
class DirectoryKey:
    kid: str
    use: KeyUse
    jwk: dict[str, Any]
    valid_from: datetime
    valid_until: datetime | None

    def valid_at(self, when: datetime, skew: timedelta = timedelta(0)) -> bool:
        """Valid at `when`; `skew` tolerates a sender whose clock runs behind ours just
        after a key was registered."""
        return self.valid_from <= when + skew and (
            self.valid_until is None or when < self.valid_until
        )

    def public(self) -> OKPKey:
        return load_public(self.jwk, self.use)


@dataclass(frozen=True)
class DirectoryMember:
    code: str
    name: str
    kind: str
    status: str
    keys: tuple[DirectoryKey, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.status == "active"

    def key(self, kid: str, use: KeyUse, when: datetime,
            skew: timedelta = timedelta(0)) -> DirectoryKey | None:
        for key in self.keys:
            if key.kid == kid and key.use == use and key.valid_at(when, skew):
                return key
        return None

    def current_encryption_key(self, when: datetime) -> DirectoryKey | None:
        """The newest valid encryption key: senders encrypt to it. A rotation gives the
        old keys an end date and the new ones none, which decides even when both were
        registered within the same second (the directory's time resolution)."""
        valid = [k for k in self.keys if k.use == "enc" and k.valid_at(when)]
        return max(valid, key=lambda k: (k.valid_until is None, k.valid_from)) if valid else None


@dataclass(frozen=True)
class Directory:
    issued_at: datetime
    members: dict[str, DirectoryMember]

    def as_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "issued_at": format_time(self.issued_at),
            "members": [
                {
                    "code": m.code,
                    "name": m.name,
                    "kind": m.kind,
                    "status": m.status,
                    "keys": [
                        {
                            "kid": k.kid,
                            "use": k.use,
                            "jwk": k.jwk,
                            "valid_from": format_time(k.valid_from),
                            "valid_until": format_time(k.valid_until) if k.valid_until else None,
                        }
                        for k in m.keys
                    ],
                }
                for m in sorted(self.members.values(), key=lambda m: m.code)
            ],
        }

    @staticmethod
    def from_json(doc: Any) -> Directory:
        try:
            if type(doc.get("v")) is not int or doc["v"] != 1:
                raise DirectoryError("v: directory version 1 expected")
            members = {}
            for m in doc["members"]:
                keys = tuple(
                    DirectoryKey(
                        kid=k["kid"],
                        use=k["use"],
                        jwk=k["jwk"],
                        valid_from=parse_time(k["valid_from"], "valid_from"),
                        valid_until=parse_time(k["valid_until"], "valid_until")
                        if k["valid_until"]
                        else None,
                    )
                    for k in m["keys"]
                )
                if m["status"] not in ("active", "suspended"):
                    raise DirectoryError(f"{m['code']}: unknown status {m['status']!r}")
                if m["kind"] not in ("state", "organisation"):
                    raise DirectoryError(f"{m['code']}: unknown kind {m['kind']!r}")
                if any(k.use not in ("sig", "enc") for k in keys):
                    raise DirectoryError(f"{m['code']}: a key's use must be sig or enc")
                members[m["code"]] = DirectoryMember(
                    code=m["code"], name=m["name"], kind=m["kind"], status=m["status"], keys=keys
                )
            return Directory(issued_at=parse_time(doc["issued_at"], "issued_at"), members=members)
        except (KeyError, TypeError, AttributeError, MalformedEnvelope) as exc:
            raise DirectoryError(f"the directory document is malformed: {exc}") from exc


def sign_directory(directory: Directory, hub_key: KeyPair) -> str:
    payload = json.dumps(directory.as_json(), separators=(",", ":")).encode()
    return jws.serialize_compact(
        {"alg": SIGN_ALG, "kid": hub_key.kid, "typ": DIRECTORY_TYP},
        payload,
        hub_key.private,
        algorithms=[SIGN_ALG],
    )


def verify_directory(document: str, hub_key: OKPKey) -> Directory:
    try:
        obj = jws.deserialize_compact(document, hub_key, algorithms=list(VERIFY_ALGS))
    except (JoseError, ValueError) as exc:
        raise DirectoryError(
            "the directory is not signed by the pinned hub key; compare the hub key "
            "fingerprint with the regional administrator"
        ) from exc
    if obj.protected.get("typ") != DIRECTORY_TYP:
        raise DirectoryError(f"typ: expected {DIRECTORY_TYP}")
    try:
        doc = json.loads(obj.payload)
    except ValueError as exc:
        raise DirectoryError("the directory payload is not JSON") from exc
    directory = Directory.from_json(doc)
    for member in directory.members.values():
        for key in member.keys:
            try:
                public = key.public()
            except KeyMaterialError as exc:
                raise DirectoryError(f"{member.code} key {key.kid}: {exc}") from exc
            if public.thumbprint() != key.kid:
                raise DirectoryError(f"{member.code} key {key.kid}: kid is not its thumbprint")
    return directory
