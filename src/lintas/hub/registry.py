"""The member directory kept by the regional administrator, and the hub's own key."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from lintas.crypto import KeyPair, generate, load_public, seal_private, unseal_private
from lintas.hub.models import HubKey, Member, MemberKey
from lintas.protocol.directory import Directory, DirectoryKey, DirectoryMember, sign_directory
from lintas.protocol.envelope import CLOCK_SKEW
from lintas.protocol.keyfile import MemberKeyFile
from lintas.protocol.members import member_kind
from lintas.storage import Database, utcnow

DEFAULT_OVERLAP = timedelta(days=7)


class RegistryError(Exception):
    """An administrator's request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class MemberView:
    code: str
    name: str
    kind: str
    status: str
    status_reason: str | None
    keys: list[DirectoryKey]


# --- the hub's signing key ------------------------------------------------------------


def init_hub_key(db: Database, passphrase: str) -> KeyPair:
    with db.session() as s:
        if s.scalars(select(HubKey).where(HubKey.active)).first() is not None:
            raise RegistryError("this hub already has a key; `lintas hub init` runs once")
        pair = generate("sig")
        s.add(
            HubKey(
                kid=pair.kid,
                public_jwk=json.dumps(pair.public_jwk()),
                private_sealed=seal_private(pair, passphrase),
                created_at=utcnow(),
                active=True,
            )
        )
    return pair


def hub_public_jwk(db: Database) -> dict[str, Any]:
    with db.session() as s:
        key = s.scalars(select(HubKey).where(HubKey.active)).first()
        if key is None:
            raise RegistryError("the hub has no key: run `lintas hub init`")
        return dict(json.loads(key.public_jwk))


def load_hub_key(db: Database, passphrase: str) -> KeyPair:
    with db.session() as s:
        key = s.scalars(select(HubKey).where(HubKey.active)).first()
        if key is None:
            raise RegistryError("the hub has no key: run `lintas hub init`")
        return unseal_private(key.private_sealed, "sig", passphrase)


# --- members --------------------------------------------------------------------------


def _key_row(member: str, jwk: dict[str, Any], valid_from: datetime) -> MemberKey:
    return MemberKey(
        kid=jwk["kid"],
        member_code=member,
        use=jwk["use"],
        public_jwk=json.dumps(jwk),
        valid_from=valid_from,
        valid_until=None,
        created_at=valid_from,
    )


def add_member(
    db: Database, keys: MemberKeyFile, name: str, organisation: bool = False
) -> MemberView:
    code = keys.member
    kind = member_kind(code)
    if kind == "organisation" and not organisation:
        raise RegistryError(
            f"{code} is not an ISO 3166-1 alpha-3 country code; if it is an organisation "
            "(e.g. IOM, UNHCR), pass --organisation"
        )
    if kind == "state" and organisation:
        raise RegistryError(f"{code} is a country code; states are not organisations")
    name = name.strip()
    if not name or len(name) > 200:
        raise RegistryError("name: 1-200 characters")
    now = utcnow()
    with db.session() as s:
        if s.get(Member, code) is not None:
            raise RegistryError(f"{code} is already a member; use rotate-key to change its keys")
        for jwk in (keys.sig, keys.enc):
            if s.get(MemberKey, jwk["kid"]) is not None:
                raise RegistryError(f"key {jwk['kid']} is already registered to a member")
        s.add(
            Member(
                code=code, name=name, kind=kind, status="active", created_at=now, updated_at=now
            )
        )
        s.flush()
        s.add_all([_key_row(code, keys.sig, now), _key_row(code, keys.enc, now)])
    return get_member(db, code)


def _view(s: Any, m: Member) -> MemberView:
    rows = s.scalars(
        select(MemberKey).where(MemberKey.member_code == m.code).order_by(MemberKey.valid_from)
    ).all()
    keys = [
        DirectoryKey(
            kid=k.kid,
            use=k.use,
            jwk=json.loads(k.public_jwk),
            valid_from=k.valid_from,
            valid_until=k.valid_until,
        )
        for k in rows
    ]
    return MemberView(m.code, m.name, m.kind, m.status, m.status_reason, keys)


def get_member(db: Database, code: str) -> MemberView:
    with db.session() as s:
        m = s.get(Member, code)
        if m is None:
            raise RegistryError(f"{code} is not a member")
        return _view(s, m)


def list_members(db: Database) -> list[MemberView]:
    with db.session() as s:
        return [_view(s, m) for m in s.scalars(select(Member).order_by(Member.code)).all()]


def set_status(db: Database, code: str, status: str, reason: str | None) -> MemberView:
    if status == "suspended" and not (reason and reason.strip()):
        raise RegistryError("reason: a suspension must say why")
    with db.session() as s:
        m = s.get(Member, code)
        if m is None:
            raise RegistryError(f"{code} is not a member")
        if m.status == status:
            raise RegistryError(f"{code} is already {status}")
        m.status = status
        m.status_reason = reason.strip() if reason else None
        m.updated_at = utcnow()
    return get_member(db, code)


def rotate_keys(
    db: Database, keys: MemberKeyFile, overlap: timedelta = DEFAULT_OVERLAP
) -> MemberView:
    """Register new keys now; the current ones stay valid for `overlap` so that envelopes
    already in flight (signed with, or encrypted to, the old keys) are still delivered."""
    if overlap < timedelta(0):
        raise RegistryError("overlap: cannot be negative")
    now = utcnow()
    with db.session() as s:
        m = s.get(Member, keys.member)
        if m is None:
            raise RegistryError(f"{keys.member} is not a member")
        for jwk in (keys.sig, keys.enc):
            if s.get(MemberKey, jwk["kid"]) is not None:
                raise RegistryError(f"key {jwk['kid']} is already registered")
        for old in s.scalars(
            select(MemberKey).where(
                MemberKey.member_code == m.code, MemberKey.valid_until.is_(None)
            )
        ):
            old.valid_until = now + overlap
        s.add_all([_key_row(m.code, keys.sig, now), _key_row(m.code, keys.enc, now)])
        m.updated_at = now
    return get_member(db, keys.member)


def build_directory(db: Database, now: datetime | None = None) -> Directory:
    members = {
        v.code: DirectoryMember(v.code, v.name, v.kind, v.status, tuple(v.keys))
        for v in list_members(db)
    }
    return Directory(issued_at=now or utcnow(), members=members)


def signed_directory(db: Database, hub_key: KeyPair) -> str:
    return sign_directory(build_directory(db), hub_key)


@dataclass(frozen=True)
class SigningKey:
    member: str
    public: Any
    valid_from: datetime
    valid_until: datetime | None

    def valid_at(self, when: datetime) -> bool:
        # A key registered "now" at the hub may sign envelopes stamped slightly earlier by
        # a node whose clock is behind: allow the protocol's clock skew at the start.
        return self.valid_from <= when + CLOCK_SKEW and (
            self.valid_until is None or when < self.valid_until
        )


def snapshot(
    db: Database, codes: set[str], kids: set[str]
) -> tuple[dict[str, str], dict[str, SigningKey]]:
    """Statuses of the named members and the named signing keys, in one read."""
    k = MemberKey.__table__.c
    with db.connection() as conn:  # Core, not the ORM: this runs for every request
        statuses = {code: status for code, status in conn.execute(
            select(Member.__table__.c.code, Member.__table__.c.status)
            .where(Member.__table__.c.code.in_(codes)))}
        rows = conn.execute(select(k.kid, k.member_code, k.public_jwk, k.valid_from,
                                   k.valid_until)
                            .where(k.kid.in_(kids), k.use == "sig")).all()
    keys = {r.kid: SigningKey(r.member_code, _public(r.public_jwk), r.valid_from,
                              r.valid_until) for r in rows}
    return statuses, keys


@functools.lru_cache(maxsize=4096)
def _public(jwk_json: str) -> Any:
    """Parsed public keys, cached: a key's JWK never changes for a given kid."""
    return load_public(json.loads(jwk_json), "sig")
