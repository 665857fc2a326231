"""Identity checks between members: both sides of the workflow (docs/checks.md).

Requester: an officer submits a check (fingerprints, or a travel document) to a partner
under an agreement; the answer comes back as hit / no-hit; after a hit the officer may
ask for the record behind it (step 2); disclosed data is purged when the agreement's
retention ends.

Responder: a received request is checked against every term of the agreement again (the
hub only routes); a refusal is answered at once and nothing of the probe is kept.
Otherwise the probe waits in `check_probes` (for a supervisor's review first, if the
agreement says so) until `process` matches it against the gallery or the document
register, **destroys it in the same transaction**, and answers. A protected record
(refugee, trafficking victim, witness) is removed from the candidates before the answer
is built, so a check from a state it is protected from gets exactly the no-hit answer.

Every state change goes through `lintas.exchange.workflow` (an illegal transition raises
before anything is written) and writes an audit entry in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lintas.documents.mrz import MRZError
from lintas.documents.mrz import parse as parse_mrz
from lintas.exchange.workflow import REQUESTER, RESPONDER, IllegalTransition
from lintas.node.agreements import SYSTEM, Agreements
from lintas.node.documents import DocumentError, DocumentRegister
from lintas.node.gallery import Gallery, GalleryError, Sample
from lintas.node.models import (
    Check,
    CheckProbe,
    GalleryPerson,
    NodeAgreement,
    OutboxMessage,
    PersonData,
    Protection,
)
from lintas.node.runtime import Node
from lintas.node.users import Principal, require_role
from lintas.policy import PURPOSES, QUERY_TYPES
from lintas.policy.agreements import (
    DATA_CATEGORIES,
    DEFAULT_FALSE_HITS_PER_MILLION,
    Agreement,
    terms_of,
)
from lintas.protocol import errors as e
from lintas.protocol.envelope import OpenedMessage
from lintas.protocol.members import is_member_code
from lintas.storage import utcnow

log = logging.getLogger("lintas.node.checks")

CHECK_LIFETIME = timedelta(days=1)
# A candidate is reported when the search's false positive identification rate at its
# score is at most this: about one search in a thousand for someone not enrolled turns
# up a candidate (`Candidate.fpir`: the per-person FMR times the persons searched). An
# agreement may set its own rate for a direction (`false_hits_per_million`).
HIT_FPIR = DEFAULT_FALSE_HITS_PER_MILLION / 1_000_000
ISO_FORMAT = "iso-19794-2:2011"
PROTECTION_KINDS = ("refugee", "victim", "witness")


class CheckError(ValueError):
    """An officer's request that cannot be carried out; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownCheck(CheckError):
    """No such check on this node (or not on the side the action needs)."""


class UnknownPerson(CheckError):
    """No gallery person with this reference."""


@dataclass(frozen=True)
class ProtectionView:
    id: int
    reference: str
    kind: str
    states: list[str]
    purposes: list[str]
    reason: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class CheckView:
    id: str
    side: str
    partner: str
    agreement: str
    purpose: str
    query_type: str
    state: str
    officer: str
    created_at: datetime
    updated_at: datetime
    deadline: datetime
    probe_sha256: str
    outcome: str | None
    error: dict[str, str] | None
    candidates: list[dict[str, Any]]
    disclosure_request: dict[str, Any] | None
    decision: str | None
    disclosed: dict[str, str] | None
    retain_until: datetime | None
    # Fingerprint checks: the search rate at which the responder reports a candidate, as
    # the agreement sets it for this direction (None: a document check, or terms gone).
    hit_fpir: float | None = None


def _hit_fpir(s: Session, row: Check, known: dict[str, Agreement | None]) -> float | None:
    """The search rate at which a fingerprint candidate of this check is a hit, as the
    agreement it came under sets it for its direction (`false_hits_per_million`); None
    for a document check or terms this node no longer holds (`known`: agreements
    already read, by id)."""
    if not row.query_type.startswith("fingerprint"):
        return None
    if row.agreement not in known:
        stored = s.get(NodeAgreement, row.agreement)
        known[row.agreement] = None if stored is None else terms_of(stored.document)
    agreement = known[row.agreement]
    for d in () if agreement is None else agreement.directions:
        if (d.responder if row.side == "requester" else d.requester) == row.partner:
            return d.hit_fpir
    return None


def _view(row: Check, s: Session, known: dict[str, Agreement | None] | None = None
          ) -> CheckView:
    """The check as its readers see it (`known`: agreements already read, by id)."""
    candidates = json.loads(row.candidates)
    return CheckView(
        row.id, row.side, row.partner, row.agreement, row.purpose, row.query_type, row.state,
        row.officer, row.created_at, row.updated_at, row.deadline, row.probe_sha256,
        row.outcome,
        {"code": row.error_code, "message": row.error_message or ""} if row.error_code else None,
        candidates,
        json.loads(row.disclosure_request) if row.disclosure_request else None,
        row.decision, json.loads(row.disclosed) if row.disclosed else None, row.retain_until,
        _hit_fpir(s, row, {} if known is None else known))


def probe_digest(probe: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(probe, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class Checks:
    def __init__(self, node: Node, agreements: Agreements, gallery: Gallery,
                 register: DocumentRegister) -> None:
        self.node = node
        self.agreements = agreements
        self.gallery = gallery
        self.register = register
        for message_type in ("check.request", "check.answer", "check.disclosure_request",
                             "check.disclosure", "check.cancel"):
            node.handlers[message_type] = self

    # --- reading ----------------------------------------------------------------------

    def get(self, check_id: str) -> CheckView | None:
        with self.node.db.session() as s:
            row = s.get(Check, check_id)
            return _view(row, s) if row is not None else None

    def recent(self, side: str | None = None, state: str | None = None,
               limit: int = 50) -> list[CheckView]:
        with self.node.db.session() as s:
            q = select(Check).order_by(Check.created_at.desc()).limit(limit)
            if side:
                q = q.where(Check.side == side)
            if state:
                q = q.where(Check.state == state)
            known: dict[str, Agreement | None] = {}
            return [_view(r, s, known) for r in s.scalars(q)]

    # --- requester --------------------------------------------------------------------

    def submit(self, actor: Principal, partner: str, agreement: str, purpose: str,
               query_type: str, fingers: Sequence[tuple[int, Sample]] | None = None,
               target: str | None = None, document: Mapping[str, str] | None = None,
               max_candidates: int | None = None,
               lifetime: timedelta = CHECK_LIFETIME) -> CheckView:
        """Send a check to `partner`. Every problem is refused before anything is stored
        or sent, with an error naming the field."""
        require_role(actor, "officer", to="submit checks")
        node = self.node
        if not is_member_code(partner) or partner == node.member:
            raise CheckError("partner", f"{partner!r} is not another member's code")
        if purpose not in PURPOSES:
            raise CheckError("purpose", f"{purpose!r} is not one of {', '.join(PURPOSES)}")
        if query_type not in QUERY_TYPES:
            raise CheckError("query_type", f"{query_type!r} is not one of "
                                           f"{', '.join(QUERY_TYPES)}")
        with node.db.session() as s:
            _, direction = self.agreements.in_force(s, agreement, node.member, partner)
        if purpose not in direction.purposes:
            raise e.PurposeNotAgreed(f"purpose: {purpose} is not agreed in {agreement} (agreed: "
                                     f"{', '.join(direction.purposes)})")
        if query_type not in direction.query_types:
            raise e.QueryTypeNotAgreed(f"query_type: {query_type} is not agreed in {agreement} "
                                       f"(agreed: {', '.join(direction.query_types)})")
        limit = direction.max_candidates if max_candidates is None else max_candidates
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= direction.max_candidates:
            raise CheckError("max_candidates", f"from 1 to {direction.max_candidates} under "
                                               f"{agreement}")
        probe = self._probe(query_type, fingers, target, document)
        digest = probe_digest(probe)
        check_id = str(uuid.uuid4())
        body = {"check": check_id, "purpose": purpose, "query_type": query_type,
                "max_candidates": limit, "probe": probe}
        now = utcnow()
        with node.db.session() as s:
            self.agreements.in_force(s, agreement, node.member, partner)
            msg = node.queue(s, "check.request", partner, body, agreement=agreement,
                             lifetime=lifetime)
            s.add(Check(id=check_id, side="requester", partner=partner, agreement=agreement,
                        purpose=purpose, query_type=query_type, state=REQUESTER.initial,
                        officer=actor.username, created_at=now, updated_at=now,
                        deadline=now + lifetime, request_message=msg, probe_sha256=digest,
                        max_candidates=limit, candidates="[]"))
            node.audit.record(s, actor.username, actor.role, "check.submit", "sent",
                              purpose=purpose, agreement=agreement, message_ids=[msg],
                              details={"check": check_id, "partner": partner,
                                       "query_type": query_type, "probe_sha256": digest})
        return self.get(check_id)  # type: ignore[return-value]

    def _probe(self, query_type: str, fingers: Sequence[tuple[int, Sample]] | None,
               target: str | None, document: Mapping[str, str] | None) -> dict[str, Any]:
        if query_type == "document":
            if fingers or target:
                raise CheckError("fingers", "a document check carries no fingerprints")
            return {"document": _document(document)}
        if document:
            raise CheckError("document", "a fingerprint check carries no document")
        if not fingers:
            raise CheckError("fingers", f"a {query_type} check needs at least one finger")
        try:
            records, rejected = self.gallery.probe_records(fingers)
        except GalleryError as exc:
            raise CheckError("fingers", str(exc)) from None
        if rejected:
            raise CheckError("fingers", "; ".join(str(r) for r in rejected))
        probe: dict[str, Any] = {"fingers": [
            {"position": p, "format": ISO_FORMAT,
             "data": base64.b64encode(r).decode("ascii")} for p, r in sorted(records.items())]}
        if query_type == "fingerprint_1to1":
            if not target or len(target) > 64:
                raise CheckError("target", "a 1:1 check names the partner's record "
                                           "(1-64 characters)")
            probe["target"] = {"reference": target}
        elif target:
            raise CheckError("target", "only a fingerprint_1to1 check names a record")
        return probe

    def request_disclosure(self, actor: Principal, check_id: str, candidate: str,
                           categories: Sequence[str], justification: str) -> CheckView:
        """Step 2: ask for the record behind a hit."""
        require_role(actor, "officer", to="ask for disclosures")
        if not justification.strip() or len(justification) > 2000:
            raise CheckError("justification", "1-2000 characters: say why the record is needed")
        node = self.node
        with node.db.session() as s:
            row = self._row(s, check_id, "requester")
            if candidate not in {c["candidate"] for c in json.loads(row.candidates)}:
                raise CheckError("candidate", f"{candidate!r} is not a candidate of check "
                                              f"{check_id}")
            _, direction = self.agreements.in_force(s, row.agreement, node.member, row.partner)
            cats = list(dict.fromkeys(categories))
            if not cats:
                raise CheckError("categories", "at least one data category")
            outside = [c for c in cats if c not in direction.disclosure]
            if outside:
                raise CheckError("categories", f"{', '.join(outside)} may not be disclosed under "
                                               f"{row.agreement} (agreed: "
                                               f"{', '.join(direction.disclosure) or 'none'})")
            self._move(row, REQUESTER, "request_disclosure")
            request = {"candidate": candidate, "categories": cats,
                       "justification": justification.strip()}
            row.disclosure_request = json.dumps(request)
            msg = node.queue(s, "check.disclosure_request", row.partner,
                             {"check": check_id, **request}, agreement=row.agreement)
            self._audit(s, actor, "check.disclosure_request", "sent", row, [msg],
                        {"candidate": candidate, "categories": ",".join(cats)})
            return _view(row, s)

    def cancel(self, actor: Principal, check_id: str, reason: str) -> CheckView:
        require_role(actor, "officer", "supervisor", to="cancel checks")
        if not reason.strip():
            raise CheckError("reason", "say why the check is cancelled")
        node = self.node
        with node.db.session() as s:
            row = self._row(s, check_id, "requester")
            self._move(row, REQUESTER, "cancel")
            msg = node.queue(s, "check.cancel", row.partner,
                             {"check": check_id, "reason": reason.strip()[:2000]},
                             agreement=row.agreement)
            self._audit(s, actor, "check.cancel", "sent", row, [msg], {"reason": reason})
            return _view(row, s)

    def close(self, actor: Principal, check_id: str) -> CheckView:
        require_role(actor, "officer", "supervisor", to="close checks")
        with self.node.db.session() as s:
            row = self._row(s, check_id, None)
            self._move(row, REQUESTER if row.side == "requester" else RESPONDER, "close")
            self._audit(s, actor, "check.close", "closed", row, [], {})
            return _view(row, s)

    # --- responder: officer actions ---------------------------------------------------

    def release(self, actor: Principal, check_id: str) -> CheckView:
        """Review mode: a supervisor lets a held request be matched and answered."""
        require_role(actor, "supervisor", to="release checks for matching")
        self._match(check_id, actor)
        return self.get(check_id)  # type: ignore[return-value]

    def reject(self, actor: Principal, check_id: str, reason: str) -> CheckView:
        """Review mode: a supervisor refuses a held request; its probe is destroyed."""
        require_role(actor, "supervisor", to="reject checks")
        if not reason.strip():
            raise CheckError("reason", "say why the request is rejected")
        with self.node.db.session() as s:
            row = self._row(s, check_id, "responder")
            self._refuse(s, row, "request_rejected", reason.strip()[:2000], actor)
        self._after_destruction()
        return self.get(check_id)  # type: ignore[return-value]

    def decide(self, actor: Principal, check_id: str, approve: Iterable[str],
               reason: str | None = None) -> CheckView:
        """Step 2 at the responder: the supervisor approves all the requested categories,
        some of them, or none (denied, with a reason)."""
        require_role(actor, "supervisor", to="decide disclosures")
        node = self.node
        with node.db.session() as s:
            row = self._row(s, check_id, "responder")
            if row.disclosure_request is None or row.state != "disclosure_pending":
                raise CheckError("check", f"{check_id} has no disclosure request waiting "
                                          f"(state {row.state})")
            request = json.loads(row.disclosure_request)
            approved = list(dict.fromkeys(approve))
            outside = [c for c in approved if c not in request["categories"]]
            if outside:
                raise CheckError("approve", f"{', '.join(outside)} was not requested")
            if not approved and not (reason and reason.strip()):
                raise CheckError("reason", "a denial must say why")
            reference = self._reference(row, request["candidate"])
            if approved and self._protected(s, reference, row.partner, row.purpose):
                # A protection added since the answer: never disclosed.
                approved, reason = [], "the record cannot be disclosed"
            data = self._person_data(s, reference, approved)
            approved = [c for c in approved if c in data]
            if not approved and not (reason and reason.strip()):
                reason = "no data of the approved categories is held"
            decision = ("denied" if not approved else
                        "approved" if set(approved) == set(request["categories"]) else "partial")
            _, direction = self.agreements.in_force(s, row.agreement, row.partner, node.member) \
                if decision != "denied" else (None, None)
            if decision == "denied":
                self._move(row, RESPONDER, "deny")
            else:
                self._move(row, RESPONDER, "approve_all" if decision == "approved"
                           else "approve_partial")
                self._move(row, RESPONDER, "disclosure_sent")
            row.decision = decision
            body = {"check": check_id, "candidate": request["candidate"], "decision": decision,
                    "data": data, "retain_days": direction.retention_days if direction else 0,
                    "reason": (reason or "").strip()[:2000] or None}
            msg = node.queue(s, "check.disclosure", row.partner, body, agreement=row.agreement)
            self._audit(s, actor, "check.disclosure_decision", decision, row, [msg],
                        {"candidate": request["candidate"], "categories": ",".join(approved),
                         "reference": reference})
            return _view(row, s)

    # --- protections and disclosable data -----------------------------------------------

    def protect(self, actor: Principal, reference: str, kind: str, states: Sequence[str] = (),
                purposes: Sequence[str] = (), reason: str | None = None) -> ProtectionView:
        """Protect a gallery record from the listed states and/or purposes."""
        require_role(actor, "admin", "supervisor", to="protect records")
        if kind not in PROTECTION_KINDS:
            raise CheckError("kind", f"{kind!r} is not one of {', '.join(PROTECTION_KINDS)}")
        bad = [c for c in states if not is_member_code(c)]
        if bad:
            raise CheckError("states", f"{', '.join(bad)} is not a member code")
        badp = [p for p in purposes if p not in PURPOSES]
        if badp:
            raise CheckError("purposes", f"{', '.join(badp)} is not one of {', '.join(PURPOSES)}")
        if not states and not purposes:
            raise CheckError("states", "name at least one state or purpose to protect from")
        with self.node.db.session() as s:
            person = _person(s, reference)
            row = Protection(person_id=person.id, kind=kind, states=json.dumps(sorted(states)),
                             purposes=json.dumps(sorted(purposes)), reason=reason,
                             created_by=actor.username, created_at=utcnow())
            s.add(row)
            s.flush()
            self.node.audit.record(s, actor.username, actor.role, "protection.add", "added",
                                   details={"reference": reference, "kind": kind,
                                            "states": ",".join(sorted(states)),
                                            "purposes": ",".join(sorted(purposes))})
            return _protection_view(row, reference)

    def protections(self, actor: Principal, reference: str) -> list[ProtectionView]:
        require_role(actor, "admin", "supervisor", to="see protections")
        with self.node.db.session() as s:
            person = _person(s, reference)
            rows = s.scalars(select(Protection).where(Protection.person_id == person.id)
                             .order_by(Protection.id))
            return [_protection_view(r, reference) for r in rows]

    def set_person_data(self, actor: Principal, reference: str, data: Mapping[str, str]) -> None:
        """What may be disclosed about a gallery person at step 2, by category."""
        require_role(actor, "admin", to="set disclosable data")
        bad = [k for k in data if k not in DATA_CATEGORIES]
        if bad:
            raise CheckError("data", f"{', '.join(bad)} is not one of "
                                     f"{', '.join(DATA_CATEGORIES)}")
        if any(not isinstance(v, str) or len(v) > 2000 for v in data.values()):
            raise CheckError("data", "each value is text of at most 2000 characters")
        with self.node.db.session() as s:
            person = _person(s, reference)
            row = s.get(PersonData, person.id)
            if row is None:
                s.add(PersonData(person_id=person.id, data=json.dumps(dict(data))))
            else:
                row.data = json.dumps(dict(data))
            self.node.audit.record(s, actor.username, actor.role, "person_data.set", "set",
                                   details={"reference": reference,
                                            "categories": ",".join(sorted(data))})

    # --- scheduled work ---------------------------------------------------------------

    def process(self, limit: int = 20) -> int:
        """One round of the node's own work: follow the hub's verdict on sent requests,
        match waiting probes, expire what is overdue, purge data past retention.
        Returns how many checks moved."""
        moved = self._follow_outbox() + self._expire() + self.purge_retention()
        with self.node.db.session() as s:
            waiting = list(s.scalars(select(Check.id).where(
                Check.side == "responder", Check.state == "received")
                .order_by(Check.created_at).limit(limit)))
        for check_id in waiting:
            try:
                self._match(check_id, SYSTEM)
                moved += 1
            except IllegalTransition:
                pass  # another worker got there first
        return moved

    def purge_retention(self, now: datetime | None = None) -> int:
        """Delete disclosed data whose agreed retention has ended (audited)."""
        now = now or utcnow()
        with self.node.db.session() as s:
            rows = list(s.scalars(select(Check).where(
                Check.side == "requester", Check.disclosed.is_not(None),
                Check.retain_until <= now).with_for_update()))
            for row in rows:
                if row.state == "disclosed":
                    self._move(row, REQUESTER, "close")
                self._move(row, REQUESTER, "purge_retention")
                row.disclosed, row.purged_at = None, now
                self._audit(s, SYSTEM, "check.purge", "purged", row, [],
                            {"retain_until": row.retain_until.isoformat()
                             if row.retain_until else ""})
        return len(rows)

    def _follow_outbox(self) -> int:
        moved = 0
        with self.node.db.session() as s:
            rows = s.execute(select(Check, OutboxMessage.status, OutboxMessage.last_error)
                             .join(OutboxMessage, OutboxMessage.id == Check.request_message)
                             .where(Check.side == "requester", Check.state == "submitted",
                                    OutboxMessage.status.in_(("sent", "failed")))).all()
            for row, status, error in rows:
                if status == "sent":
                    self._move(row, REQUESTER, "hub_accepted")
                    self._audit(s, SYSTEM, "check.delivered", "accepted by the hub", row,
                                [row.request_message], {})
                else:
                    code, _, message = (error or "refused: ").partition(": ")
                    row.error_code, row.error_message = code[:64], message
                    self._move(row, REQUESTER, "refused")
                    self._audit(s, SYSTEM, "check.refused", code[:64], row,
                                [row.request_message], {"message": message[:500]})
                moved += 1
        return moved

    def _expire(self) -> int:
        now = utcnow()
        moved = 0
        with self.node.db.session() as s:
            rows = list(s.scalars(select(Check).where(Check.deadline < now)))
            for row in rows:
                machine = REQUESTER if row.side == "requester" else RESPONDER
                if machine.can(row.state, "expire"):
                    self._move(row, machine, "expire")
                    self._destroy_probe(s, row.id)
                    self._audit(s, SYSTEM, "check.expire", "expired", row, [], {})
                    moved += 1
        if moved:
            self._after_destruction()
        return moved

    # --- responder: matching ----------------------------------------------------------

    def _match(self, check_id: str, actor: Principal) -> None:
        """Match a waiting probe, then destroy it and answer in one transaction.

        The search itself runs outside any transaction: on SQLite a session holds the
        database for the whole process, and a 1:N search of a large gallery takes long
        enough that arriving envelopes and API reads would wait behind it. The check is
        re-read and locked afterwards; if it moved meanwhile (cancelled, expired, matched
        by another worker) the transition is refused and nothing is written."""
        node = self.node
        with node.db.session() as s:
            row = self._row(s, check_id, "responder")
            RESPONDER.next(row.state, "match")  # raises unless received / awaiting review
            probe_row = s.get(CheckProbe, check_id)
            if probe_row is None:
                raise IllegalTransition("responder", row.state, "match")  # probe gone
            probe = json.loads(probe_row.probe)
            query_type, limit = row.query_type, row.max_candidates
            # Signed terms never change: the rate the check was admitted under.
            hit_fpir = _hit_fpir(s, row, {}) or HIT_FPIR
        found: list[dict[str, Any]] | e.ProtocolError
        try:
            found = self._search(query_type, limit, probe, hit_fpir)
        except e.ProtocolError as exc:
            found = exc
        with node.db.session() as s:
            row = self._row(s, check_id, "responder")
            self._move(row, RESPONDER, "match")
            probe_row = s.get(CheckProbe, check_id)
            # Match and destroy: the probe goes in the transaction that records the match.
            if probe_row is not None:
                s.delete(probe_row)
            if isinstance(found, e.ProtocolError):
                # Cannot happen for a probe validated on receipt; answered as refused.
                self._answer(s, row, "refused", [], {"code": found.code,
                                                     "message": found.message})
                self._audit(s, actor, "check.match", "refused", row, [],
                            {"probe_sha256": row.probe_sha256, "error": found.code})
            else:
                # Protections are applied to the full result, whatever it holds, so that
                # a protected record costs the same work as any other (no timing signal).
                protected = self._protected_among(
                    s, [c["reference"] for c in found if "reference" in c], row.partner,
                    row.purpose)
                kept = [c for c in found if c.get("reference") not in protected]
                candidates = [{"candidate": f"c{i}", "rank": i, **c}
                              for i, c in enumerate(kept, 1)]
                withheld = len(found) - len(kept)
                outcome = "hit" if candidates else "no_hit"
                self._move(row, RESPONDER, "answer_hit" if candidates else "answer_no_hit")
                self._answer(s, row, outcome, candidates, None)
                self._audit(s, actor, "check.match", outcome, row, [],
                            {"probe_sha256": row.probe_sha256, "probe_destroyed": True,
                             "candidates": len(candidates), "withheld": withheld})
        self._after_destruction()

    def _search(self, query_type: str, limit: int, probe: dict[str, Any],
                hit_fpir: float = HIT_FPIR) -> list[dict[str, Any]]:
        """Every candidate found, best first, before protections are applied; a
        fingerprint candidate only where its search rate is at most `hit_fpir`."""
        if query_type == "document":
            doc = probe["document"]
            try:
                found = (self.register.check_mrz(doc["mrz"]) if "mrz" in doc else
                         self.register.check_number(doc["number"], doc["issuing_state"]))
            except (MRZError, DocumentError) as exc:
                raise e.BadProbe(f"probe.document: {exc}") from None
            return [{"status": found.status or ""}] if found.hit else []
        templates = self.gallery.probe_from_records(_records(probe))
        within = [probe["target"]["reference"]] if "target" in probe else None
        results = self.gallery.search(templates, limit=limit, max_fpir=hit_fpir, within=within)
        return [{"fmr": float(f"{c.fmr:.3g}"), "fpir": float(f"{c.fpir:.3g}"),
                 "reference": c.reference} for c in results]

    def _answer(self, s: Session, row: Check, outcome: str, candidates: list[dict[str, Any]],
                error: dict[str, str] | None) -> None:
        row.outcome, row.answered_at = outcome, utcnow()
        row.candidates = json.dumps(candidates)
        # What the partner sees: an opaque token, a rank and the rate — never the record id.
        shown = [{k: v for k, v in c.items() if k in ("candidate", "rank", "fmr", "fpir")}
                 for c in candidates]
        body: dict[str, Any] = {"check": row.id, "outcome": outcome, "candidates": shown}
        if error is not None:
            body["error"] = error
            row.error_code, row.error_message = error["code"], error["message"]
        self.node.queue(s, "check.answer", row.partner, body, in_reply_to=row.request_message,
                        agreement=row.agreement)

    def _refuse(self, s: Session, row: Check, code: str, message: str,
                actor: Principal) -> None:
        self._move(row, RESPONDER, "refuse")
        self._destroy_probe(s, row.id)
        self._answer(s, row, "refused", [], {"code": code, "message": message})
        self._audit(s, actor, "check.refuse", code, row, [], {"message": message[:500]})

    @staticmethod
    def _destroy_probe(s: Session, check_id: str) -> None:
        probe = s.get(CheckProbe, check_id)
        if probe is not None:
            s.delete(probe)

    def _after_destruction(self) -> None:
        """SQLite keeps an old copy of changed pages in its write-ahead log until a
        checkpoint; truncate it so a destroyed probe leaves the files at once
        (secure_delete, set on every connection, zeroes the freed space in the database
        file itself)."""
        if self.node.db.engine.dialect.name == "sqlite":
            with self.node.db.engine.connect() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    def _protected_among(self, s: Session, references: list[str], partner: str,
                         purpose: str) -> set[str]:
        if not references:
            return set()
        rows = s.execute(select(GalleryPerson.reference, Protection.states, Protection.purposes)
                         .join(Protection, Protection.person_id == GalleryPerson.id)
                         .where(GalleryPerson.reference.in_(references))).all()
        return {ref for ref, states, purposes in rows
                if partner in json.loads(states) or purpose in json.loads(purposes)}

    def _protected(self, s: Session, reference: str, partner: str, purpose: str) -> bool:
        return bool(self._protected_among(s, [reference], partner, purpose))

    @staticmethod
    def _person_data(s: Session, reference: str, categories: list[str]) -> dict[str, str]:
        if not categories:
            return {}
        data = s.scalar(select(PersonData.data).join(
            GalleryPerson, GalleryPerson.id == PersonData.person_id)
            .where(GalleryPerson.reference == reference))
        held = json.loads(data) if data else {}
        return {c: held[c] for c in categories if c in held}

    @staticmethod
    def _reference(row: Check, candidate: str) -> str:
        for c in json.loads(row.candidates):
            if c["candidate"] == candidate:
                return str(c.get("reference", ""))
        raise CheckError("candidate", f"{candidate!r} is not a candidate of check {row.id}")

    # --- messages from partners -------------------------------------------------------

    def redact(self, body: dict[str, Any]) -> dict[str, Any]:
        """The inbox keeps a check request without its probe (only the probe's digest),
        and a disclosure without its data (kept, until its retention ends, in `checks`)."""
        if "probe" in body:
            return {**body, "probe": {"sha256": probe_digest(body["probe"])}}
        if "data" in body:
            return {**body, "data": sorted(body["data"])}
        return body

    def handle(self, s: Session, message: OpenedMessage) -> None:
        h, body = message.header, message.body
        if h.type == "check.request":
            self._received(s, message)
            return
        row = s.get(Check, body["check"])
        side = "responder" if h.type in ("check.disclosure_request", "check.cancel") \
            else "requester"
        if row is None or row.partner != h.sender or row.side != side:
            raise e.InvalidBody(f"body.check: {body['check']} is not a check with {h.sender}")
        try:
            if h.type == "check.answer":
                event = {"hit": "answer_hit", "no_hit": "answer_no_hit",
                         "refused": "refused"}[body["outcome"]]
                self._move(row, REQUESTER, event)
                row.outcome, row.answered_at = body["outcome"], utcnow()
                row.candidates = json.dumps(body["candidates"])
                if "error" in body:
                    row.error_code = body["error"]["code"][:64]
                    row.error_message = body["error"]["message"]
                self._audit(s, SYSTEM, "check.answer", body["outcome"], row, [h.id],
                            {"candidates": len(body["candidates"])})
            elif h.type == "check.disclosure_request":
                self._move(row, RESPONDER, "disclosure_requested")
                self._reference(row, body["candidate"])
                row.disclosure_request = json.dumps(
                    {"candidate": body["candidate"], "categories": body["categories"],
                     "justification": body["justification"]})
                self._audit(s, SYSTEM, "check.disclosure_request", "received", row, [h.id],
                            {"categories": ",".join(body["categories"])})
            elif h.type == "check.disclosure":
                denied = body["decision"] == "denied"
                self._move(row, REQUESTER, "disclosure_denied" if denied
                           else "disclosure_received")
                row.decision = body["decision"]
                if not denied:
                    row.disclosed = json.dumps(body["data"])
                    row.retain_until = utcnow() + timedelta(days=body["retain_days"])
                self._audit(s, SYSTEM, "check.disclosure", body["decision"], row, [h.id],
                            {"categories": ",".join(sorted(body["data"])),
                             "retain_days": body["retain_days"]})
            elif h.type == "check.cancel":
                self._move(row, RESPONDER, "cancel")
                self._destroy_probe(s, row.id)
                self._audit(s, SYSTEM, "check.cancel", "cancelled", row, [h.id],
                            {"reason": body["reason"][:500]})
        except IllegalTransition as exc:
            raise e.InvalidBody(f"body.check: {exc}") from None

    def _received(self, s: Session, message: OpenedMessage) -> None:
        h, body = message.header, message.body
        if s.get(Check, body["check"]) is not None:
            raise e.InvalidBody(f"body.check: {body['check']} is already known")
        now = utcnow()
        row = Check(id=body["check"], side="responder", partner=h.sender,
                    agreement=h.agreement or "", purpose=body["purpose"],
                    query_type=body["query_type"], state=RESPONDER.initial, officer="system",
                    created_at=now, updated_at=now, deadline=h.expires,
                    request_message=h.id, probe_sha256=probe_digest(body["probe"]),
                    max_candidates=body["max_candidates"], candidates="[]")
        s.add(row)
        s.flush()
        self._audit(s, SYSTEM, "check.received", "received", row, [h.id],
                    {"probe_sha256": row.probe_sha256, "query_type": row.query_type})
        try:
            mode = self._admissible(s, row, body)
        except e.ProtocolError as exc:
            self._refuse(s, row, exc.code, exc.message, SYSTEM)  # the probe is never stored
            return
        s.add(CheckProbe(check_id=row.id, probe=json.dumps(body["probe"])))
        if mode == "review":
            self._move(row, RESPONDER, "hold_for_review")
            self._audit(s, SYSTEM, "check.hold_for_review", "awaiting review", row, [], {})

    def _admissible(self, s: Session, row: Check, body: dict[str, Any]) -> str:
        """Every term again, then the probe itself: the response mode, or the refusal."""
        agreement, direction = self.agreements.in_force(s, row.agreement, row.partner,
                                                        self.node.member)
        if row.purpose not in direction.purposes:
            raise e.PurposeNotAgreed(f"purpose: {row.purpose} is not agreed in {agreement.id}")
        if row.query_type not in direction.query_types:
            raise e.QueryTypeNotAgreed(f"query_type: {row.query_type} is not agreed in "
                                       f"{agreement.id}")
        if row.max_candidates > direction.max_candidates:
            raise e.InvalidBody(f"max_candidates: at most {direction.max_candidates} under "
                                f"{agreement.id}")
        day = row.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        year = day.replace(month=1, day=1)
        counted = select(func.count()).select_from(Check).where(
            Check.side == "responder", Check.partner == row.partner,
            Check.agreement == row.agreement, Check.id != row.id)
        if (s.scalar(counted.where(Check.created_at >= day)) or 0) >= direction.daily_quota:
            raise e.QuotaExhausted(f"agreement {agreement.id}: the daily quota of "
                                   f"{direction.daily_quota} checks is used up")
        if (s.scalar(counted.where(Check.created_at >= year)) or 0) >= direction.annual_quota:
            raise e.QuotaExhausted(f"agreement {agreement.id}: the annual quota of "
                                   f"{direction.annual_quota} checks is used up")
        probe = body["probe"]
        if row.query_type == "document":
            if "document" not in probe:
                raise e.BadProbe("probe: a document check carries a document")
            try:
                _document(probe["document"])
            except CheckError as exc:
                raise e.BadProbe(f"probe.{exc}") from None
        else:
            if "fingers" not in probe:
                raise e.BadProbe("probe: a fingerprint check carries fingers")
            if (row.query_type == "fingerprint_1to1") != ("target" in probe):
                raise e.BadProbe("probe.target: a 1:1 check names one record, a 1:N none")
            try:
                self.gallery.probe_from_records(_records(probe))
            except GalleryError as exc:
                raise e.BadProbe(f"probe.fingers: {exc}") from None
        return direction.response_mode

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _move(row: Check, machine: Any, event: str) -> None:
        row.state = machine.next(row.state, event)
        row.updated_at = utcnow()

    def _row(self, s: Session, check_id: str, side: str | None) -> Check:
        row = s.scalars(select(Check).where(Check.id == check_id).with_for_update()).first()
        if row is None or (side is not None and row.side != side):
            raise UnknownCheck("check", f"{check_id!r} is not a{' ' + side if side else ''} "
                                      "check of this node")
        return row

    def _audit(self, s: Session, actor: Principal, action: str, outcome: str, row: Check,
               message_ids: list[str], details: Mapping[str, Any]) -> None:
        self.node.audit.record(s, actor.username, actor.role, action, outcome,
                               purpose=row.purpose, agreement=row.agreement,
                               message_ids=message_ids,
                               details={"check": row.id, "side": row.side,
                                        "partner": row.partner, "state": row.state,
                                        **details})


def _protection_view(row: Protection, reference: str) -> ProtectionView:
    return ProtectionView(row.id, reference, row.kind, json.loads(row.states),
                          json.loads(row.purposes), row.reason, row.created_by, row.created_at)


def _person(s: Session, reference: str) -> GalleryPerson:
    person = s.scalars(select(GalleryPerson).where(GalleryPerson.reference == reference)).first()
    if person is None:
        raise UnknownPerson("reference", f"{reference!r} is not in the gallery")
    return person


def _records(probe: Mapping[str, Any]) -> dict[int, bytes]:
    records = {}
    for i, f in enumerate(probe["fingers"]):
        if f["format"] != ISO_FORMAT:
            raise e.BadProbe(f"probe.fingers[{i}].format: only {ISO_FORMAT}")
        if f["position"] in records:
            raise e.BadProbe(f"probe.fingers[{i}].position: {f['position']} given twice")
        try:
            records[f["position"]] = base64.b64decode(f["data"], validate=True)
        except (binascii.Error, ValueError):
            raise e.BadProbe(f"probe.fingers[{i}].data: not base64") from None
    return records


def _document(document: Mapping[str, str] | None) -> dict[str, str]:
    """A document to check, by MRZ (every check digit verified here, before anything is
    sent) or by number and issuing state."""
    if not isinstance(document, Mapping) or not document:
        raise CheckError("document", "give mrz, or number and issuing_state")
    if "mrz" in document:
        if set(document) != {"mrz"}:
            raise CheckError("document", "give mrz alone, or number and issuing_state")
        try:
            parse_mrz(document["mrz"])
        except MRZError as exc:
            raise CheckError(f"document.mrz.{exc.field}", exc.message) from None
        return {"mrz": document["mrz"]}
    if set(document) != {"number", "issuing_state"}:
        raise CheckError("document", "give mrz, or number and issuing_state")
    number, state = document["number"], document["issuing_state"]
    if not isinstance(number, str) or not 1 <= len(number.strip()) <= 20:
        raise CheckError("document.number", "1-20 characters")
    if not isinstance(state, str) or not 1 <= len(state.strip()) <= 3:
        raise CheckError("document.issuing_state", "a 1-3 letter ICAO code, e.g. UTO")
    return {"number": number.strip(), "issuing_state": state.strip()}
