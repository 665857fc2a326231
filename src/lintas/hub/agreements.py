"""The hub's registry of bilateral agreements, and what the relay asks of it.

A party registers a countersigned agreement (`register`); the hub checks both
signatures against its own member directory first. Either party may then suspend,
resume or terminate it with a signed status notice (`change_status`). The relay refuses
an envelope whose type needs an agreement (`protocol.messages.AGREEMENT_RULES`) when the
agreement named in its routing header is unknown, not between its sender and recipient,
not in force, or out of quota — from the routing header alone (docs/agreements.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lintas.hub import registry
from lintas.hub.models import AgreementUsage, RegisteredAgreement
from lintas.policy import Agreement, AgreementError, SignedAgreement, effective_state
from lintas.policy import agreements as policy
from lintas.protocol import errors as e
from lintas.protocol.envelope import RoutingHeader
from lintas.protocol.messages import AGREEMENT_RULES
from lintas.storage import Database, utcnow


@dataclass(frozen=True)
class AgreementView:
    id: str
    proposer: str
    counterparty: str
    status: str         # as registered: active | suspended | terminated
    state: str          # what applies now (adds not_yet_valid and expired)
    status_reason: str | None
    document: str
    status_notice: str | None
    registered_at: datetime
    updated_at: datetime


def _view(row: RegisteredAgreement, now: datetime) -> AgreementView:
    return AgreementView(row.id, row.proposer, row.counterparty, row.status,
                         effective_state(row.status, _terms(row.document, row.terms_sha256),
                                         now),
                         row.status_reason, row.document, row.status_notice, row.registered_at,
                         row.updated_at)


@functools.lru_cache(maxsize=1024)
def _terms(document: str, digest: str) -> Agreement:
    """The terms of a registered document (checked when registered), cached by digest."""
    agreement = policy.terms_of(document)
    assert agreement.digest() == digest
    return agreement


def register(db: Database, member: str, document: str,
             now: datetime | None = None) -> AgreementView:
    """Register a countersigned agreement sent by one of its parties. Idempotent for the
    very same terms; another agreement under a registered id is refused."""
    now = now or utcnow()
    signed = policy_verify(db, document)
    a = signed.agreement
    if member not in a.parties:
        raise e.InvalidAgreement(f"agreement {a.id}: {member} is not a party and may not "
                                 "register it")
    try:
        with db.session() as s:
            row = s.get(RegisteredAgreement, a.id)
            if row is not None:
                if row.terms_sha256 != a.digest():
                    raise e.AgreementConflict(f"id: another agreement is registered as {a.id}")
                return _view(row, now)
            row = RegisteredAgreement(
                id=a.id, proposer=a.proposer, counterparty=a.counterparty,
                document=signed.serialize(), terms_sha256=a.digest(),
                valid_from=a.valid_from, valid_until=a.valid_until, status="active",
                status_reason=None, status_notice=None, registered_by=member,
                registered_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return _view(row, now)
    except IntegrityError:  # both parties registered it at the same moment
        return register(db, member, document, now)


def policy_verify(db: Database, document: str) -> SignedAgreement:
    try:
        return policy.verify(document, registry.build_directory(db))
    except AgreementError as exc:
        raise e.InvalidAgreement(str(exc)) from None


def change_status(db: Database, member: str, agreement_id: str, notice: str,
                  now: datetime | None = None) -> AgreementView:
    """Apply a party's signed status notice (suspend, resume, terminate)."""
    now = now or utcnow()
    directory = registry.build_directory(db)
    with db.session() as s:
        row = s.scalars(select(RegisteredAgreement)
                        .where(RegisteredAgreement.id == agreement_id).with_for_update()).first()
        if row is None or member not in (row.proposer, row.counterparty):
            raise e.NoAgreement(f"agreement: {agreement_id} is not registered between {member} "
                                "and another member")
        signed = SignedAgreement(_terms(row.document, row.terms_sha256), {})
        try:
            verified = policy.verify_status(notice, signed, directory)
            if verified.by != member:
                raise AgreementError("notice.by", f"signed by {verified.by}, sent by {member}")
            row.status = policy.next_status(row.status, verified)
        except AgreementError as exc:
            if exc.field == "status":
                raise e.AgreementConflict(str(exc)) from None
            raise e.InvalidAgreement(str(exc)) from None
        row.status_reason = verified.reason or None
        row.status_notice = notice
        row.updated_at = now
        s.flush()
        return _view(row, now)


def for_member(db: Database, member: str, now: datetime | None = None) -> list[AgreementView]:
    now = now or utcnow()
    with db.session() as s:
        rows = s.scalars(select(RegisteredAgreement)
                         .where((RegisteredAgreement.proposer == member)
                                | (RegisteredAgreement.counterparty == member))
                         .order_by(RegisteredAgreement.id)).all()
        return [_view(r, now) for r in rows]


# --- the relay's checks -----------------------------------------------------------------


def check_headers(db: Database, headers: list[RoutingHeader], now: datetime
                  ) -> dict[str, e.ProtocolError]:
    """Refusals, by message id, of envelopes whose agreement does not allow them."""
    needing = [h for h in headers if h.type in AGREEMENT_RULES]
    if not needing:
        return {}
    ids = {h.agreement for h in needing if h.agreement}
    t = RegisteredAgreement.__table__.c
    with db.connection() as conn:
        rows = {r.id: r for r in conn.execute(
            select(t.id, t.proposer, t.counterparty, t.document, t.terms_sha256, t.status,
                   t.status_reason).where(t.id.in_(ids)))} if ids else {}
    refusals: dict[str, e.ProtocolError] = {}
    for h in needing:
        try:
            _check_one(h, rows.get(h.agreement or ""), now)
        except e.ProtocolError as exc:
            refusals[h.id] = exc
    return refusals


def _check_one(h: RoutingHeader, row: object, now: datetime) -> None:
    pair = f"{h.sender} and {h.recipient}"
    if not h.agreement:
        raise e.NoAgreement(f"agreement: a {h.type} must name an agreement between {pair}")
    if row is None or {row.proposer, row.counterparty} != {h.sender, h.recipient}:  # type: ignore[attr-defined]
        raise e.NoAgreement(f"agreement: {h.agreement} is not registered between {pair}")
    terms = _terms(row.document, row.terms_sha256)  # type: ignore[attr-defined]
    state = effective_state(row.status, terms, now)  # type: ignore[attr-defined]
    reason = f" ({row.status_reason})" if row.status_reason else ""  # type: ignore[attr-defined]
    if AGREEMENT_RULES[h.type] == "ask":
        if terms.direction(h.sender, h.recipient) is None:
            raise e.NoAgreement(f"agreement: {h.agreement} does not let {h.sender} ask "
                                f"{h.recipient}")
        if state != "active":
            raise e.AgreementInactive(f"agreement: {h.agreement} is {state}{reason}")
    elif state == "terminated":
        raise e.AgreementInactive(f"agreement: {h.agreement} is terminated{reason}")


def take_quota(s: Session, h: RoutingHeader, now: datetime) -> None:
    """Count one check request against its agreement's quotas, in the caller's
    transaction (which also stores the envelope). The agreement row is locked first, so
    concurrent hub processes count one at a time; raises QuotaExhausted."""
    row = s.scalars(select(RegisteredAgreement).where(RegisteredAgreement.id == h.agreement)
                    .with_for_update()).one()
    direction = _terms(row.document, row.terms_sha256).direction(h.sender, h.recipient)
    assert direction is not None  # check_headers refused it otherwise
    today = now.date()
    used = usage(s, row.id, h.sender, today)
    if used.today >= direction.daily_quota:
        raise e.QuotaExhausted(f"agreement {row.id}: the daily quota of "
                               f"{direction.daily_quota} checks by {h.sender} is used up "
                               "(it resets at 00:00 UTC)")
    if used.year >= direction.annual_quota:
        raise e.QuotaExhausted(f"agreement {row.id}: the annual quota of "
                               f"{direction.annual_quota} checks by {h.sender} is used up")
    counter = s.get(AgreementUsage, (row.id, h.sender, today))
    if counter is None:
        s.add(AgreementUsage(agreement_id=row.id, requester=h.sender, day=today, count=1))
    else:
        counter.count += 1
    s.flush()


@dataclass(frozen=True)
class Usage:
    today: int
    year: int


def usage(s: Session, agreement_id: str, requester: str, day: date) -> Usage:
    u = AgreementUsage
    today = s.scalar(select(u.count).where(u.agreement_id == agreement_id,
                                           u.requester == requester, u.day == day)) or 0
    year = s.scalar(select(func.coalesce(func.sum(u.count), 0))
                    .where(u.agreement_id == agreement_id, u.requester == requester,
                           u.day >= date(day.year, 1, 1), u.day <= date(day.year, 12, 31))) or 0
    return Usage(int(today), int(year))
