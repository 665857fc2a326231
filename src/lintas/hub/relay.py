"""The store-and-forward relay: admit, lease, acknowledge, purge.

Every decision is taken from the routing header and the directory alone; the payload
is opaque ciphertext to the hub. A refused envelope leaves nothing in the database.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from lintas.hub import registry
from lintas.hub.models import Message
from lintas.protocol import errors as e
from lintas.protocol.auth import read_claims, verify_token
from lintas.protocol.envelope import (
    CLOCK_SKEW,
    ParsedEnvelope,
    check_times,
    parse,
    verify_signature,
)
from lintas.protocol.messages import is_known_type
from lintas.storage import Database, utcnow

log = logging.getLogger("lintas.hub.relay")

DEFAULT_MAX_ENVELOPE = 16 * 1024 * 1024
LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class Delivery:
    id: str
    envelope: str


class Relay:
    def __init__(self, db: Database, max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE) -> None:
        self.db = db
        self.max_envelope_bytes = max_envelope_bytes

    # --- intake -----------------------------------------------------------------------

    def admit(self, raw: bytes, now: datetime | None = None) -> ParsedEnvelope:
        """Check an envelope from its routing header and store it, or raise a ProtocolError."""
        now = now or utcnow()
        try:
            parsed = self._check(raw, now)
            self._store(parsed, now)
        except e.ProtocolError as exc:
            log.info("refused code=%s size=%d reason=%s", exc.code, len(raw), exc.message)
            raise
        h = parsed.header
        log.info(
            "accepted id=%s from=%s to=%s type=%s size=%d expires=%s",
            h.id, h.sender, h.recipient, h.type, parsed.size, h.expires.isoformat(),
        )
        return parsed

    def _check(self, raw: bytes, now: datetime) -> ParsedEnvelope:
        if len(raw) > self.max_envelope_bytes:
            raise e.EnvelopeTooLarge(
                f"the envelope has {len(raw)} bytes; this hub accepts at most "
                f"{self.max_envelope_bytes}"
            )
        parsed = parse(raw)
        h = parsed.header
        check_times(h, now)
        if not is_known_type(h.type):
            raise e.UnknownMessageType(f"type {h.type!r} is not a Lintas message type")
        try:
            status, key = registry.member_signing_key(self.db, h.sender, parsed.kid, now)
        except LookupError:
            raise e.UnknownSender(f"{h.sender} is not a member of this hub") from None
        if status != "active":
            raise e.SenderSuspended(f"{h.sender} is suspended and may not send")
        if key is None:
            raise e.UnknownKey(f"{parsed.kid} is not a valid signing key of {h.sender} now")
        verify_signature(parsed, key)
        recipient = registry.member_status(self.db, h.recipient)
        if recipient is None:
            raise e.UnknownRecipient(f"{h.recipient} is not a member of this hub")
        if recipient != "active":
            raise e.RecipientSuspended(f"{h.recipient} is suspended and cannot receive")
        return parsed

    def _store(self, parsed: ParsedEnvelope, now: datetime) -> None:
        h = parsed.header
        try:
            with self.db.session() as s:
                s.add(
                    Message(
                        id=h.id,
                        sender=h.sender,
                        recipient=h.recipient,
                        type=h.type,
                        size=parsed.size,
                        created_at=h.created,
                        expires_at=h.expires,
                        received_at=now,
                        envelope=parsed.raw,
                        delivery_count=0,
                    )
                )
        except IntegrityError:
            raise e.DuplicateMessage(f"message {h.id} was already accepted (replay?)") from None

    # --- mailbox ----------------------------------------------------------------------

    def authenticate(self, authorization: str | None, method: str, path: str) -> str:
        now = utcnow()
        claims = read_claims(authorization)
        try:
            status, key = registry.member_signing_key(self.db, claims.member, claims.kid, now)
        except LookupError:
            raise e.Unauthorized(f"Authorization: {claims.member} is not a member") from None
        if key is None:
            raise e.Unauthorized(
                f"Authorization: {claims.kid} is not a valid key of {claims.member}"
            )
        if status != "active":
            raise e.Unauthorized(f"Authorization: {claims.member} is suspended")
        verify_token(authorization or "", key, method, path, now, CLOCK_SKEW)
        return claims.member

    def lease(self, member: str, limit: int, now: datetime | None = None) -> list[Delivery]:
        """Hand out up to `limit` waiting envelopes, each to one poller at a time.

        The conditional UPDATE is a compare-and-swap on the lease: of two hub processes
        racing for the same row (on PostgreSQL or SQLite), exactly one wins it. An
        envelope not acknowledged within the lease is offered again.
        """
        now = now or utcnow()
        token = str(uuid.uuid4())
        claimable = and_(
            Message.recipient == member,
            Message.acked_at.is_(None),
            Message.envelope.is_not(None),
            Message.expires_at > now,
            or_(Message.leased_until.is_(None), Message.leased_until < now),
        )
        with self.db.session() as s:
            ids = s.scalars(
                select(Message.id).where(claimable).order_by(Message.received_at).limit(limit)
            ).all()
            if not ids:
                return []
            s.execute(
                update(Message)
                .where(Message.id.in_(ids), claimable)
                .values(
                    leased_until=now + LEASE,
                    lease_token=token,
                    delivery_count=Message.delivery_count + 1,
                )
                .execution_options(synchronize_session=False)
            )
        with self.db.session() as s:
            rows = s.execute(
                select(Message.id, Message.envelope, Message.sender, Message.type)
                .where(Message.lease_token == token)
                .order_by(Message.received_at)
            ).all()
        for row in rows:
            log.info("delivered id=%s from=%s to=%s type=%s", row.id, row.sender, member, row.type)
        return [Delivery(r.id, r.envelope) for r in rows if r.envelope is not None]

    def ack(self, member: str, ids: list[str], now: datetime | None = None) -> int:
        """Drop the payloads the recipient has safely committed; keep metadata for replay
        detection until expiry."""
        now = now or utcnow()
        with self.db.session() as s:
            result = s.execute(
                update(Message)
                .where(Message.recipient == member, Message.id.in_(ids), Message.acked_at.is_(None))
                .values(envelope=None, acked_at=now, leased_until=None, lease_token=None)
                .execution_options(synchronize_session=False)
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.info("acked member=%s count=%d", member, count)
        return count

    def purge(self, now: datetime | None = None) -> int:
        """Delete rows past expiry (plus the clock-skew margin): payload and metadata."""
        now = now or utcnow()
        with self.db.session() as s:
            expired_unacked = s.scalars(
                select(Message.id).where(
                    Message.expires_at < now - CLOCK_SKEW, Message.acked_at.is_(None)
                )
            ).all()
            result = s.execute(delete(Message).where(Message.expires_at < now - CLOCK_SKEW))
        for msg_id in expired_unacked:
            log.info("expired id=%s (never acknowledged; payload purged)", msg_id)
        return int(getattr(result, "rowcount", 0) or 0)

    def waiting(self, member: str) -> int:
        from sqlalchemy import func

        with self.db.session() as s:
            return int(
                s.scalar(
                    select(func.count()).where(
                        Message.recipient == member,
                        Message.acked_at.is_(None),
                        Message.envelope.is_not(None),
                    )
                )
                or 0
            )
