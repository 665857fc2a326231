"""The node's users, their roles, and how an API token becomes a `Principal`.

    Users(db)
      .add(username, role, actor)          -> (UserRecord, token)   the token is shown once
      .set_role(username, role, actor)     -> UserRecord
      .new_token(username, actor)          -> (UserRecord, token)   the old token stops at once
      .disable(username, reason, actor)    -> UserRecord
      .get(username)                       -> UserRecord | None
      .list()                              -> [UserRecord], by username
      .authenticate(token)                 -> Principal | None

Roles (`ROLES`): an *officer* submits checks; a *supervisor* reviews them and decides the
second-step disclosures; the *dpo* (data-protection officer) reads the audit trail and
the reports, and nothing else; an *admin* manages the gallery, the agreements, the users
and the document register. Managing users is for admins only: every method taking an
`actor` refuses another role (`NotPermitted`).

A token is `secrets.token_urlsafe(32)` (256 bits); the node keeps only its SHA-256, so a
copy of the database does not let anyone in. `authenticate` looks the digest up: an
unknown token and a disabled user's token both give None.

Each change commits with exactly one audit entry (`user.add`, `user.role`, `user.token`,
`user.disable`) naming the acting user and role, or not at all. The last active admin
can never be demoted or disabled, so a node cannot lock its operators out; concurrent
attempts on PostgreSQL are serialised by locking the active admins' rows.

Errors are `UserError(field, message)`, whose text starts with the field at fault.
Subclasses tell a caller (a REST endpoint) which answer to give: `UnknownUser` (404),
`UserConflict` (409: the state forbids it), `NotPermitted` (403); a plain `UserError` is
bad input (400).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lintas.node.audit import AuditLog
from lintas.node.models import User
from lintas.storage import Database, utcnow

ROLES = ("officer", "supervisor", "dpo", "admin")
FIRST_ADMIN = "admin"
MAX_REASON = 200
MAX_TOKEN = 512  # far above a token we issue; longer input is refused unhashed

_USERNAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")


class UserError(ValueError):
    """A request about users that is refused; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownUser(UserError):
    """No such user."""


class UserConflict(UserError):
    """The user's state forbids the change (duplicate, disabled, the last admin)."""


class NotPermitted(UserError):
    """The acting user's role may not do this."""


@dataclass(frozen=True)
class Principal:
    """Who acts, and in which role: an authenticated user, or a local operator."""

    username: str
    role: str


@dataclass(frozen=True)
class UserRecord:
    """A user as shown to an admin: never the token nor its digest."""

    username: str
    role: str
    active: bool
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token: all the node stores of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def require_role(actor: Principal, *roles: str, to: str) -> None:
    """Refuse `actor` unless its role is one of `roles`; `to` says what it tried."""
    if actor.role not in roles:
        raise NotPermitted("role", f"{actor.username} acts as {actor.role}; only "
                                   f"{' or '.join(roles)} may {to}")


def check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise UserError("username", f"{username!r} must be 1-64 characters a-z 0-9 . _ - "
                                    "starting with a letter")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError("role", f"{role!r} must be one of {', '.join(ROLES)}")
    return role


def _check_reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > MAX_REASON:
        raise UserError("reason", f"required: 1 to {MAX_REASON} characters saying why")
    return text


def _record(row: User) -> UserRecord:
    return UserRecord(row.username, row.role, row.active, row.created_at, row.updated_at,
                      row.disabled_at, row.disabled_reason)


def add_first_admin(session: Session, token: str) -> None:
    """The user "admin" (role admin) of a node being initialised, in the caller's
    transaction (`lintas node init`): its token is the one init prints."""
    now = utcnow()
    session.add(User(username=FIRST_ADMIN, role="admin", token_sha256=token_digest(token),
                     active=True, created_at=now, updated_at=now))


class Users:
    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit or AuditLog(db)

    # --- reading ------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal | None:
        """The active user whose token this is, or None (unknown token, disabled user).

        The token is looked up by its SHA-256, so the comparison never runs over the
        token's characters one by one, and stored digests reveal nothing usable."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            return None
        with self.db.connection() as conn:
            row = conn.execute(select(User.username, User.role)
                               .where(User.token_sha256 == token_digest(token),
                                      User.active.is_(True))).first()
        return None if row is None else Principal(row.username, row.role)

    def get(self, username: str) -> UserRecord | None:
        with self.db.session() as s:
            row = s.scalars(select(User).where(User.username == username)).one_or_none()
            return None if row is None else _record(row)

    def list(self) -> list[UserRecord]:
        """Every user, active or not, by username."""
        with self.db.session() as s:
            return [_record(row) for row in s.scalars(select(User).order_by(User.username))]

    # --- changing -----------------------------------------------------------------------

    def add(self, username: str, role: str, actor: Principal) -> tuple[UserRecord, str]:
        """Create an active user; returns it and its token, which is never shown again."""
        require_role(actor, "admin", to="add users")
        check_username(username)
        check_role(role)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        try:
            with self.db.session() as s:
                if s.scalars(select(User.id).where(User.username == username)).first():
                    raise UserConflict("username", f"{username!r} already exists (a "
                                                   "disabled user keeps its name)")
                row = User(username=username, role=role, token_sha256=token_digest(token),
                           active=True, created_at=now, updated_at=now)
                s.add(row)
                s.flush()
                self._audit(s, actor, "user.add", username=username, role=role)
                record = _record(row)
        except IntegrityError:  # added by another process meanwhile
            raise UserConflict("username", f"{username!r} already exists") from None
        return record, token

    def set_role(self, username: str, role: str, actor: Principal) -> UserRecord:
        """Give an active user another role. The last active admin keeps theirs."""
        require_role(actor, "admin", to="change roles")
        check_role(role)
        with self.db.session() as s:
            admins = self._lock_admins(s)
            row = self._active(s, username)
            if row.role == role:
                raise UserConflict("role", f"{username!r} already has the role {role}")
            self._keep_an_admin(admins, row, "demoted")
            previous, row.role, row.updated_at = row.role, role, utcnow()
            self._audit(s, actor, "user.role", username=username, role=role,
                        previous_role=previous)
            return _record(row)

    def new_token(self, username: str, actor: Principal) -> tuple[UserRecord, str]:
        """Issue a new token to an active user; the old one stops working at once."""
        require_role(actor, "admin", to="issue tokens")
        token = secrets.token_urlsafe(32)
        with self.db.session() as s:
            row = self._active(s, username)
            row.token_sha256, row.updated_at = token_digest(token), utcnow()
            self._audit(s, actor, "user.token", username=username)
            return _record(row), token

    def disable(self, username: str, reason: str, actor: Principal) -> UserRecord:
        """Disable a user for good (the name stays taken, for the audit trail): their
        token is refused from now on. The last active admin cannot be disabled."""
        require_role(actor, "admin", to="disable users")
        reason = _check_reason(reason)
        with self.db.session() as s:
            admins = self._lock_admins(s)
            row = self._active(s, username)
            self._keep_an_admin(admins, row, "disabled")
            now = utcnow()
            row.active, row.disabled_at, row.disabled_reason, row.updated_at = (
                False, now, reason, now)
            self._audit(s, actor, "user.disable", username=username, role=row.role,
                        reason=reason)
            return _record(row)

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _active(s: Session, username: str) -> User:
        check_username(username)
        row = s.scalars(select(User).where(User.username == username)
                        .with_for_update()).one_or_none()
        if row is None:
            raise UnknownUser("username", f"no user {username!r}")
        if not row.active:
            raise UserConflict("username", f"{username!r} is disabled "
                                           f"({row.disabled_reason})")
        return row

    @staticmethod
    def _lock_admins(s: Session) -> Sequence[int]:
        """The active admins' ids, their rows locked (in id order, before any other row,
        so that two admins demoting each other queue up instead of deadlocking)."""
        return s.scalars(select(User.id).where(User.role == "admin", User.active.is_(True))
                         .order_by(User.id).with_for_update()).all()

    @staticmethod
    def _keep_an_admin(admins: Sequence[int], row: User, change: str) -> None:
        if row.role == "admin" and not [i for i in admins if i != row.id]:
            raise UserConflict("username", f"{row.username!r} is the last active admin and "
                                           f"cannot be {change}: make another user admin "
                                           "first")

    def _audit(self, s: Session, actor: Principal, action: str, **details: str) -> None:
        self.audit.record(s, actor.username, actor.role, action, "ok", details=details)
