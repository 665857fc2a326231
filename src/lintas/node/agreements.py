"""The node's side of bilateral agreements (docs/agreements.md).

    proposer's node                hub                 counterparty's node
    propose ── agreement.proposal ──────────────────► received (waits for its admin)
                                                      countersign ─► POST /v1/agreements
    active ◄── agreement.countersigned ────────────── active
    (or declined ◄── agreement.declined ───────────── decline)

Suspension, resumption and termination: the acting party's node sends its signed notice
to the hub (which then applies it to the relay) and to the other party. Every action and
every message received is written to the audit trail in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lintas.node.hub_client import HubClient
from lintas.node.models import NodeAgreement
from lintas.node.runtime import Node
from lintas.node.users import Principal, require_role
from lintas.policy import Agreement, AgreementError, SignedAgreement, effective_state
from lintas.policy import agreements as policy
from lintas.protocol import errors as e
from lintas.protocol.envelope import OpenedMessage
from lintas.storage import utcnow

SYSTEM = Principal("system", "system")


@dataclass(frozen=True)
class AgreementRecord:
    id: str
    counterpart: str
    our_role: str
    status: str   # proposed | received | declined | active | suspended | terminated
    state: str    # what applies now (adds not_yet_valid and expired to active)
    status_reason: str | None
    agreement: Agreement
    document: str
    updated_at: datetime


def _record(row: NodeAgreement, now: datetime) -> AgreementRecord:
    agreement = policy.terms_of(row.document)
    state = effective_state(row.status, agreement, now) if row.status == "active" else row.status
    return AgreementRecord(row.id, row.counterpart, row.our_role, row.status, state,
                           row.status_reason, agreement, row.document, row.updated_at)


class Agreements:
    """Agreements as this node knows them, and the actions on them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        for message_type in ("agreement.proposal", "agreement.countersigned",
                             "agreement.declined", "agreement.status"):
            node.handlers[message_type] = self

    # --- queries ----------------------------------------------------------------------

    def get(self, agreement_id: str) -> AgreementRecord | None:
        with self.node.db.session() as s:
            row = s.get(NodeAgreement, agreement_id)
            return _record(row, utcnow()) if row is not None else None

    def list(self) -> list[AgreementRecord]:
        now = utcnow()
        with self.node.db.session() as s:
            return [_record(r, now) for r in s.scalars(select(NodeAgreement)
                                                       .order_by(NodeAgreement.id))]

    def in_force(self, s: Session, agreement_id: str, requester: str, responder: str
                 ) -> tuple[Agreement, policy.Direction]:
        """The terms for a check from `requester` to `responder`, or the protocol error
        the hub would give (no_agreement / agreement_inactive)."""
        row = s.get(NodeAgreement, agreement_id)
        if row is None or row.status in ("proposed", "received", "declined"):
            raise e.NoAgreement(f"agreement: {agreement_id} is not an agreement in force "
                                "with this node")
        agreement = policy.terms_of(row.document)
        if {requester, responder} != set(agreement.parties):
            raise e.NoAgreement(f"agreement: {agreement_id} is not between {requester} and "
                                f"{responder}")
        direction = agreement.direction(requester, responder)
        if direction is None:
            raise e.NoAgreement(f"agreement: {agreement_id} does not let {requester} ask "
                                f"{responder}")
        state = effective_state(row.status, agreement, utcnow())
        if state != "active":
            reason = f" ({row.status_reason})" if row.status_reason else ""
            raise e.AgreementInactive(f"agreement: {agreement_id} is {state}{reason}")
        return agreement, direction

    # --- actions ----------------------------------------------------------------------

    def propose(self, actor: Principal, agreement: Agreement) -> AgreementRecord:
        """Sign `agreement` as its proposer and send it to the counterparty."""
        require_role(actor, "admin", to="propose agreements")
        node = self.node
        if agreement.proposer != node.member:
            raise AgreementError("proposer", f"this node is {node.member}; it can only propose "
                                             "as itself")
        signed = policy.propose(agreement, node.signing_key())
        now = utcnow()
        with node.db.session() as s:
            if s.get(NodeAgreement, agreement.id) is not None:
                raise AgreementError("id", f"{agreement.id} is already known to this node")
            s.add(NodeAgreement(id=agreement.id, counterpart=agreement.counterparty,
                                our_role="proposer", document=signed.serialize(),
                                terms_sha256=agreement.digest(), status="proposed",
                                status_reason=None, created_at=now, updated_at=now))
            msg = node.queue(s, "agreement.proposal", agreement.counterparty,
                             {"document": signed.serialize()})
            node.audit.record(s, actor.username, actor.role, "agreement.propose", "sent",
                              agreement=agreement.id, message_ids=[msg],
                              details={"counterparty": agreement.counterparty,
                                       "terms_sha256": agreement.digest()})
            s.flush()
            return _record(s.get(NodeAgreement, agreement.id), now)  # type: ignore[arg-type]

    def countersign(self, actor: Principal, agreement_id: str,
                    client: HubClient) -> AgreementRecord:
        """Countersign a received proposal, register it at the hub, tell the proposer."""
        require_role(actor, "admin", to="countersign agreements")
        node = self.node
        with node.db.session() as s:
            row = self._row(s, agreement_id, "received", "countersigned")
            signed = policy.countersign(self._verified(row.document, False), node.signing_key())
            # Registered first: if the hub refuses, nothing changes here.
            client.register_agreement(signed.serialize())
            row.document, row.status, row.updated_at = signed.serialize(), "active", utcnow()
            msg = node.queue(s, "agreement.countersigned", row.counterpart,
                             {"document": signed.serialize()})
            node.audit.record(s, actor.username, actor.role, "agreement.countersign",
                              "registered", agreement=agreement_id, message_ids=[msg],
                              details={"proposer": row.counterpart,
                                       "terms_sha256": row.terms_sha256})
            s.flush()
            return _record(row, utcnow())

    def decline(self, actor: Principal, agreement_id: str, reason: str) -> AgreementRecord:
        require_role(actor, "admin", to="decline agreements")
        if not reason.strip() or len(reason) > policy.MAX_REASON:
            raise AgreementError("reason", f"1-{policy.MAX_REASON} characters: say why")
        node = self.node
        with node.db.session() as s:
            row = self._row(s, agreement_id, "received", "declined")
            row.status, row.status_reason, row.updated_at = "declined", reason.strip(), utcnow()
            msg = node.queue(s, "agreement.declined", row.counterpart,
                             {"agreement": agreement_id, "reason": reason.strip()})
            node.audit.record(s, actor.username, actor.role, "agreement.decline", "sent",
                              agreement=agreement_id, message_ids=[msg],
                              details={"reason": reason.strip()})
            s.flush()
            return _record(row, utcnow())

    def change_status(self, actor: Principal, agreement_id: str, status: str, reason: str,
                      client: HubClient) -> AgreementRecord:
        """Suspend, resume ("active") or terminate: the hub first, then the partner."""
        require_role(actor, "admin", to="suspend, resume or terminate agreements")
        node = self.node
        with node.db.session() as s:
            row = s.scalars(select(NodeAgreement).where(NodeAgreement.id == agreement_id)
                            .with_for_update()).first()
            if row is None or row.status not in ("active", "suspended"):
                raise AgreementError("agreement", f"{agreement_id} is not an agreement in force "
                                                  "or suspended here")
            signed = self._verified(row.document, True)
            notice = policy.status_notice(signed, status, reason, node.member,
                                          node.signing_key())
            policy.next_status(row.status, notice)
            client.agreement_status(agreement_id, notice.document)
            row.status, row.status_reason, row.updated_at = status, notice.reason or None, utcnow()
            msg = node.queue(s, "agreement.status", row.counterpart, {"notice": notice.document})
            node.audit.record(s, actor.username, actor.role, f"agreement.{status}", "sent",
                              agreement=agreement_id, message_ids=[msg],
                              details={"reason": notice.reason})
            s.flush()
            return _record(row, utcnow())

    # --- messages from the partner ----------------------------------------------------

    def redact(self, body: dict[str, Any]) -> dict[str, Any]:
        return body  # agreements hold no personal data

    def handle(self, s: Session, message: OpenedMessage) -> None:
        h, body = message.header, message.body
        now = utcnow()
        if h.type == "agreement.proposal":
            signed = self._verified(body["document"], False)
            a = signed.agreement
            if a.proposer != h.sender or a.counterparty != self.node.member:
                raise e.InvalidAgreement(f"agreement {a.id}: proposed by {a.proposer} to "
                                         f"{a.counterparty}, but sent by {h.sender} to us")
            if s.get(NodeAgreement, a.id) is not None:
                raise e.AgreementConflict(f"agreement {a.id} is already known here")
            s.add(NodeAgreement(id=a.id, counterpart=h.sender, our_role="counterparty",
                                document=signed.serialize(), terms_sha256=a.digest(),
                                status="received", status_reason=None, created_at=now,
                                updated_at=now))
            self._audit(s, "agreement.received", a.id, h.id, {"proposer": h.sender})
        elif h.type == "agreement.countersigned":
            signed = self._verified(body["document"], True)
            a = signed.agreement
            row = s.get(NodeAgreement, a.id)
            if (row is None or row.our_role != "proposer" or row.terms_sha256 != a.digest()
                    or a.counterparty != h.sender):
                raise e.InvalidAgreement(f"agreement {a.id}: not a proposal of ours to "
                                         f"{h.sender} with these terms")
            if row.status == "proposed":
                row.document, row.status, row.updated_at = signed.serialize(), "active", now
            self._audit(s, "agreement.countersigned", a.id, h.id, {"by": h.sender})
        elif h.type == "agreement.declined":
            row = s.get(NodeAgreement, body["agreement"])
            if row is None or row.counterpart != h.sender or row.status != "proposed":
                raise e.InvalidAgreement(f"agreement {body['agreement']}: no proposal of ours "
                                         f"to {h.sender} is waiting")
            row.status, row.status_reason, row.updated_at = "declined", body["reason"], now
            self._audit(s, "agreement.declined", row.id, h.id, {"reason": body["reason"]})
        elif h.type == "agreement.status":
            self._status_from_partner(s, h.sender, h.id, body["notice"])

    def _status_from_partner(self, s: Session, sender: str, msg: str, notice: str) -> None:
        import base64
        import json

        try:
            claimed = json.loads(base64.urlsafe_b64decode(
                notice.split(".")[1] + "=" * (-len(notice.split(".")[1]) % 4)))
            agreement_id = str(claimed["agreement"])
        except (ValueError, IndexError, KeyError, TypeError):
            raise e.InvalidAgreement("notice: not a status notice") from None
        row = s.get(NodeAgreement, agreement_id)
        if row is None or row.counterpart != sender:
            raise e.NoAgreement(f"agreement: {agreement_id} is not an agreement with {sender}")
        try:
            verified = policy.verify_status(notice, self._verified(row.document, True),
                                            self.node.directory())
            if verified.by != sender:
                raise AgreementError("notice.by", f"signed by {verified.by}, sent by {sender}")
            row.status = policy.next_status(row.status, verified)
        except AgreementError as exc:
            raise e.InvalidAgreement(str(exc)) from None
        row.status_reason, row.updated_at = verified.reason or None, utcnow()
        self._audit(s, f"agreement.{verified.status}", row.id, msg,
                    {"by": sender, "reason": verified.reason})

    # --- helpers ----------------------------------------------------------------------

    def _audit(self, s: Session, action: str, agreement_id: str, msg: str,
               details: dict[str, str]) -> None:
        self.node.audit.record(s, SYSTEM.username, SYSTEM.role, action, "recorded",
                               agreement=agreement_id, message_ids=[msg], details=details)

    def _verified(self, document: str, countersigned: bool) -> SignedAgreement:
        try:
            return policy.verify(document, self.node.directory(), countersigned)
        except AgreementError as exc:
            raise e.InvalidAgreement(str(exc)) from None

    @staticmethod
    def _row(s: Session, agreement_id: str, status: str, action: str) -> NodeAgreement:
        row = s.scalars(select(NodeAgreement).where(NodeAgreement.id == agreement_id)
                        .with_for_update()).first()
        if row is None:
            raise AgreementError("agreement", f"{agreement_id} is not known to this node")
        if row.status != status:
            raise AgreementError("agreement", f"{agreement_id} is {row.status}; only a "
                                              f"{status} agreement can be {action}")
        return row

