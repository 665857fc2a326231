"""The store-and-forward relay: admit, lease, acknowledge, purge.

Every decision is taken from the routing header and the directory alone; the payload
is opaque ciphertext to the hub. A refused envelope leaves nothing in the database.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from lintas.hub import agreements, registry
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
from lintas.protocol.messages import QUOTA_COUNTED, is_known_type
from lintas.storage import Database, utcnow

log = logging.getLogger("lintas.hub.relay")
MESSAGES: Table = Message.__table__  # type: ignore[assignment]

DEFAULT_MAX_ENVELOPE = 16 * 1024 * 1024
LEASE = timedelta(seconds=30)
MAX_MAILBOX_BYTES = 32 * 1024 * 1024


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
        """Check one envelope from its routing header and store it, or raise ProtocolError."""
        (outcome,) = self.admit_many([raw], now)
        if isinstance(outcome, e.ProtocolError):
            raise outcome
        return outcome

    def admit_many(
        self, raws: list[bytes], now: datetime | None = None
    ) -> list[ParsedEnvelope | e.ProtocolError]:
        """Check and store a batch; one outcome per envelope, in order.

        Every envelope is judged on its own (one refusal does not refuse the others).
        The directory is read once per batch and the accepted envelopes are written in
        one transaction, which is what makes batches cheap.
        """
        now = now or utcnow()
        outcomes: list[ParsedEnvelope | e.ProtocolError] = []
        for raw in raws:
            try:
                outcomes.append(self._parse(raw, now))
            except e.ProtocolError as exc:
                outcomes.append(exc)
        parsed = [o for o in outcomes if isinstance(o, ParsedEnvelope)]
        if parsed:
            refusals = self._check_against_directory(parsed, now)
            outcomes = [refusals.get(id(o), o) if isinstance(o, ParsedEnvelope) else o
                        for o in outcomes]
            outcomes = self._store(outcomes, now)
        for raw, o in zip(raws, outcomes, strict=True):
            if isinstance(o, e.ProtocolError):
                log.info("refused code=%s size=%d reason=%s", o.code, len(raw), o.message)
            else:
                h = o.header
                log.info("accepted id=%s from=%s to=%s type=%s size=%d expires=%s", h.id,
                         h.sender, h.recipient, h.type, o.size, h.expires.isoformat())
        return outcomes

    def _parse(self, raw: bytes, now: datetime) -> ParsedEnvelope:
        if len(raw) > self.max_envelope_bytes:
            raise e.EnvelopeTooLarge(
                f"the envelope has {len(raw)} bytes; this hub accepts at most "
                f"{self.max_envelope_bytes}"
            )
        parsed = parse(raw)
        check_times(parsed.header, now)
        if not is_known_type(parsed.header.type):
            raise e.UnknownMessageType(
                f"type {parsed.header.type!r} is not a Lintas message type"
            )
        return parsed

    def _check_against_directory(
        self, batch: list[ParsedEnvelope], now: datetime
    ) -> dict[int, e.ProtocolError]:
        """Sender, key, signature and recipient checks; returns refusals by id(envelope)."""
        codes = {p.header.sender for p in batch} | {p.header.recipient for p in batch}
        members, keys = registry.snapshot(self.db, codes, {p.kid for p in batch})
        refusals: dict[int, e.ProtocolError] = {}
        for p in batch:
            h = p.header
            try:
                sender = members.get(h.sender)
                if sender is None:
                    raise e.UnknownSender(f"{h.sender} is not a member of this hub")
                if sender != "active":
                    raise e.SenderSuspended(f"{h.sender} is suspended and may not send")
                key = keys.get(p.kid)
                if key is None or key.member != h.sender or not key.valid_at(now):
                    raise e.UnknownKey(f"{p.kid} is not a valid signing key of {h.sender} now")
                verify_signature(p, key.public)
                recipient = members.get(h.recipient)
                if recipient is None:
                    raise e.UnknownRecipient(f"{h.recipient} is not a member of this hub")
                if recipient != "active":
                    raise e.RecipientSuspended(f"{h.recipient} is suspended and cannot receive")
            except e.ProtocolError as exc:
                refusals[id(p)] = exc
        by_agreement = agreements.check_headers(
            self.db, [p.header for p in batch if id(p) not in refusals], now)
        for p in batch:
            if p.header.id in by_agreement and id(p) not in refusals:
                refusals[id(p)] = by_agreement[p.header.id]
        return refusals

    def _store(
        self, outcomes: list[ParsedEnvelope | e.ProtocolError], now: datetime
    ) -> list[ParsedEnvelope | e.ProtocolError]:
        accepted = [o for o in outcomes if isinstance(o, ParsedEnvelope)]
        if not accepted:
            return outcomes
        with self.db.session() as s:
            known = set(s.scalars(select(Message.id).where(
                Message.id.in_([p.header.id for p in accepted]))))
        seen: set[str] = set()
        result: list[ParsedEnvelope | e.ProtocolError] = []
        for o in outcomes:
            if isinstance(o, ParsedEnvelope):
                if o.header.id in known or o.header.id in seen:
                    o = e.DuplicateMessage(f"message {o.header.id} was already accepted "
                                           "(replay?)")
                else:
                    seen.add(o.header.id)
            result.append(o)
        if not any(isinstance(o, ParsedEnvelope) for o in result):
            return result
        try:
            return self._insert(result, now)
        except IntegrityError:
            # Another hub process stored one of these ids in the meantime: go one by one.
            return [self._insert([o], now)[0] if isinstance(o, ParsedEnvelope) else o
                    for o in result]

    def _insert(self, outcomes: list[ParsedEnvelope | e.ProtocolError], now: datetime
                ) -> list[ParsedEnvelope | e.ProtocolError]:
        """Store the accepted envelopes in one transaction, counting check requests
        against their agreement's quota in the same transaction (a refused or failed
        store counts nothing). A one-envelope call turns a duplicate id into a refusal."""
        try:
            with self.db.session() as s:
                result: list[ParsedEnvelope | e.ProtocolError] = []
                for o in outcomes:
                    if isinstance(o, ParsedEnvelope) and o.header.type in QUOTA_COUNTED:
                        try:
                            agreements.take_quota(s, o.header, now)
                        except e.QuotaExhausted as exc:
                            o = exc
                    result.append(o)
                rows = [self._row(o, now) for o in result if isinstance(o, ParsedEnvelope)]
                if rows:
                    s.execute(insert(MESSAGES), rows)
        except IntegrityError:
            if len(outcomes) > 1:
                raise
            (p,) = outcomes
            assert isinstance(p, ParsedEnvelope)
            return [e.DuplicateMessage(f"message {p.header.id} was already accepted (replay?)")]
        return result

    @staticmethod
    def _row(p: ParsedEnvelope, now: datetime) -> dict[str, Any]:
        h = p.header
        return {"id": h.id, "sender": h.sender, "recipient": h.recipient, "type": h.type,
                "size": p.size, "created_at": h.created, "expires_at": h.expires,
                "received_at": now, "envelope": p.raw, "delivery_count": 0,
                "leased_until": None, "lease_token": None, "acked_at": None}

    # --- mailbox ----------------------------------------------------------------------

    def authenticate(self, authorization: str | None, method: str, path: str,
                     body: bytes = b"") -> str:
        now = utcnow()
        claims = read_claims(authorization)
        members, keys = registry.snapshot(self.db, {claims.member}, {claims.kid})
        status, key = members.get(claims.member), keys.get(claims.kid)
        if status is None:
            raise e.Unauthorized(f"Authorization: {claims.member} is not a member")
        if key is None or key.member != claims.member or not key.valid_at(now):
            raise e.Unauthorized(
                f"Authorization: {claims.kid} is not a valid key of {claims.member}"
            )
        if status != "active":
            raise e.Unauthorized(f"Authorization: {claims.member} is suspended")
        verify_token(authorization or "", key.public, method, path, now, CLOCK_SKEW, body)
        return claims.member

    def lease(self, member: str, limit: int, now: datetime | None = None,
              max_bytes: int = MAX_MAILBOX_BYTES) -> list[Delivery]:
        """Hand out up to `limit` waiting envelopes, each to one poller at a time.

        One UPDATE ... RETURNING whose WHERE re-checks that the row is still free: of two
        hub processes racing for a row (PostgreSQL re-evaluates the condition on the
        locked row; SQLite runs the statement under its write lock), exactly one wins
        it. An envelope not acknowledged within the lease is offered again. An answer
        holds at most `max_bytes` of envelopes (always at least one envelope).
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
        oldest = (select(Message.id).where(claimable).order_by(Message.received_at)
                  .limit(limit).scalar_subquery())
        with self.db.session() as s:
            rows = s.execute(
                update(Message)
                .where(Message.id.in_(oldest), claimable)
                .values(leased_until=now + LEASE, lease_token=token,
                        delivery_count=Message.delivery_count + 1)
                .returning(Message.id, Message.envelope, Message.sender, Message.type,
                           Message.received_at)
                .execution_options(synchronize_session=False)
            ).all()
        rows = sorted(rows, key=lambda r: r.received_at)
        kept: list[Any] = []
        total = 0
        for row in rows:
            total += len(row.envelope or "")
            if kept and total > max_bytes:
                break
            kept.append(row)
        if len(kept) < len(rows):
            # Over the answer's byte budget: hand the rest back at once for the next poll.
            with self.db.session() as s:
                s.execute(update(Message)
                          .where(Message.id.in_([r.id for r in rows[len(kept):]]),
                                 Message.lease_token == token)
                          .values(leased_until=None, lease_token=None,
                                  delivery_count=Message.delivery_count - 1)
                          .execution_options(synchronize_session=False))
            rows = kept
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
