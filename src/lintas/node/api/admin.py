"""Agreements, users, the audit trail and the diagnostics of the exchange."""


import json
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from lintas.audit import Witness
from lintas.node.agreements import AgreementRecord
from lintas.node.api.common import ERRORS, Context, NotFound
from lintas.node.hub_client import HubClient, HubUnavailable
from lintas.node.users import ROLES, Principal, UserRecord
from lintas.policy import Agreement
from lintas.policy.agreements import MAX_REASON
from lintas.protocol import errors as e
from lintas.protocol.members import is_member_code
from lintas.protocol.messages import MAX_DIAGNOSTIC_TEXT

Username = Annotated[str, Path(min_length=1, max_length=64)]
AgreementId = Annotated[str, Path(min_length=1, max_length=64)]


# --- agreements -------------------------------------------------------------------------

class AgreementOut(BaseModel):
    id: str
    counterpart: str
    our_role: str = Field(description="proposer or counterparty")
    status: str = Field(description="proposed, received, declined, active, suspended or "
                                    "terminated")
    state: str = Field(description="what applies today: the status, or not_yet_valid / "
                                   "expired for an active agreement outside its dates")
    status_reason: str | None
    terms: dict[str, Any]
    updated_at: datetime


def agreement_out(record: AgreementRecord) -> AgreementOut:
    return AgreementOut(id=record.id, counterpart=record.counterpart, our_role=record.our_role,
                        status=record.status, state=record.state,
                        status_reason=record.status_reason, terms=record.agreement.as_json(),
                        updated_at=record.updated_at)


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["suspended", "active", "terminated"] = Field(
        description="suspended, active (resume) or terminated (final)")
    reason: str = Field(min_length=1, max_length=MAX_REASON)


# --- users ------------------------------------------------------------------------------

class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    username: str
    role: str
    active: bool
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


class NewUserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    role: Literal[ROLES]  # type: ignore[valid-type]


class UserToken(BaseModel):
    user: UserOut
    token: str = Field(description="shown once: the node keeps only its SHA-256")


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal[ROLES]  # type: ignore[valid-type]


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class Me(BaseModel):
    username: str
    role: str
    member: str


def user_out(user: UserRecord) -> UserOut:
    return UserOut.model_validate(user)


# --- audit --------------------------------------------------------------------------------

class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    outcome: str
    purpose: str | None
    agreement: str | None
    message_ids: list[str]
    details: dict[str, Any]
    digest: str


class ProblemOut(BaseModel):
    seq: int
    kind: str
    message: str


class VerificationOut(BaseModel):
    intact: bool
    entries: int
    head_seq: int | None
    head_digest: str | None
    witnessed: bool = Field(description="checked against the heads the hub witnessed")
    witnessed_up_to: int | None = Field(
        description="the last entry the hub witnessed (None: none, or not asked)")
    problems: list[ProblemOut]


# --- messages -------------------------------------------------------------------------------

class DiagnosticRequest(BaseModel):
    to: str = Field(description="member code of the recipient, e.g. IDN", examples=["IDN"])
    text: str = Field(min_length=1, max_length=MAX_DIAGNOSTIC_TEXT, examples=["hello"])
    reply: bool = Field(True, description="ask the recipient's node to answer with a pong")


class Queued(BaseModel):
    id: str
    status: str = "queued"


class InboxEntry(BaseModel):
    id: str
    sender: str
    type: str
    created: datetime
    received: datetime
    in_reply_to: str | None
    body: dict[str, Any]


class OutboxEntry(BaseModel):
    id: str
    recipient: str
    type: str
    status: str
    attempts: int
    created: datetime
    sent_at: datetime | None
    last_error: str | None


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix="/api/v1", responses=ERRORS)
    s = ctx.services
    node = s.node
    Admin = Annotated[Principal, ctx.allow("admin")]  # noqa: N806
    Anyone = Annotated[Principal, ctx.allow(*ROLES)]  # noqa: N806
    Dpo = Annotated[Principal, ctx.allow("dpo")]  # noqa: N806
    Verifier = Annotated[Principal, ctx.allow("dpo", "admin")]  # noqa: N806

    def hub() -> HubClient:
        return HubClient(node.hub_url, node.member, node.signing_key())

    # --- who am I -----------------------------------------------------------------------

    @r.get("/me", response_model=Me, tags=["users"])
    async def me(actor: Anyone) -> Me:
        return Me(username=actor.username, role=actor.role, member=node.member)

    # --- agreements ---------------------------------------------------------------------

    @r.get("/agreements", response_model=list[AgreementOut], tags=["agreements"])
    async def agreements(actor: Anyone) -> list[AgreementOut]:
        """Every agreement this node knows, with its terms and what applies today."""
        return [agreement_out(a) for a in await ctx.run(s.agreements.list)]

    @r.get("/agreements/{agreement_id}", response_model=AgreementOut, tags=["agreements"])
    async def agreement(agreement_id: AgreementId, actor: Anyone) -> AgreementOut:
        found = await ctx.run(s.agreements.get, agreement_id)
        if found is None:
            raise NotFound(f"agreement: {agreement_id!r} is not known to this node")
        return agreement_out(found)

    @r.post("/agreements", status_code=201, response_model=AgreementOut, tags=["agreements"])
    async def propose(terms: dict[str, Any], actor: Admin) -> AgreementOut:
        """Propose an agreement (the terms as in docs/agreements.md, this node the
        proposer): signed here and sent to the counterparty to countersign."""

        def work() -> AgreementRecord:
            return s.agreements.propose(actor, Agreement.from_json(terms))

        record = await ctx.run(work)
        ctx.wake_sender()
        return agreement_out(record)

    @r.post("/agreements/{agreement_id}/countersign", response_model=AgreementOut,
            tags=["agreements"])
    async def countersign(agreement_id: AgreementId, actor: Admin) -> AgreementOut:
        """Countersign a received proposal: registered at the hub, then the proposer is
        told; both sides may then send checks under it."""

        def work() -> AgreementRecord:
            with hub() as client:
                return s.agreements.countersign(actor, agreement_id, client)

        record = await ctx.run(work)
        ctx.wake_sender()
        return agreement_out(record)

    @r.post("/agreements/{agreement_id}/decline", response_model=AgreementOut,
            tags=["agreements"])
    async def decline(agreement_id: AgreementId, req: DeclineIn, actor: Admin) -> AgreementOut:
        record = await ctx.run(s.agreements.decline, actor, agreement_id, req.reason)
        ctx.wake_sender()
        return agreement_out(record)

    @r.post("/agreements/{agreement_id}/status", response_model=AgreementOut,
            tags=["agreements"])
    async def change_status(agreement_id: AgreementId, req: StatusIn,
                            actor: Admin) -> AgreementOut:
        """Suspend, resume or terminate (final): the hub first, then the partner."""

        def work() -> AgreementRecord:
            with hub() as client:
                return s.agreements.change_status(actor, agreement_id, req.status,
                                                  req.reason, client)

        record = await ctx.run(work)
        ctx.wake_sender()
        return agreement_out(record)

    # --- users --------------------------------------------------------------------------

    @r.get("/users", response_model=list[UserOut], tags=["users"])
    async def users(actor: Admin) -> list[UserOut]:
        return [user_out(u) for u in await ctx.run(node.users.list)]

    @r.post("/users", status_code=201, response_model=UserToken, tags=["users"])
    async def add_user(req: NewUserIn, actor: Admin) -> UserToken:
        """Add a user; the token is shown once."""
        user, token = await ctx.run(node.users.add, req.username, req.role, actor)
        return UserToken(user=user_out(user), token=token)

    @r.post("/users/{username}/role", response_model=UserOut, tags=["users"])
    async def set_role(username: Username, req: RoleIn, actor: Admin) -> UserOut:
        return user_out(await ctx.run(node.users.set_role, username, req.role, actor))

    @r.post("/users/{username}/token", response_model=UserToken, tags=["users"])
    async def new_token(username: Username, actor: Admin) -> UserToken:
        """A new token for the user; the old one stops working at once."""
        user, token = await ctx.run(node.users.new_token, username, actor)
        return UserToken(user=user_out(user), token=token)

    @r.post("/users/{username}/disable", response_model=UserOut, tags=["users"])
    async def disable(username: Username, req: ReasonIn, actor: Admin) -> UserOut:
        """Disable a user (the last admin cannot be)."""
        return user_out(await ctx.run(node.users.disable, username, req.reason, actor))

    # --- audit --------------------------------------------------------------------------

    @r.get("/audit", response_model=list[AuditEntryOut], tags=["audit"])
    async def audit(actor: Dpo, limit: int = Query(50, ge=1, le=1000),
                    before: int | None = Query(None, ge=1, le=2**62,
                                               description="entries numbered below this"),
                    action: str | None = Query(None, max_length=64,
                                               description="e.g. check, or check.match")
                    ) -> list[AuditEntryOut]:
        """The audit trail, newest first (never biometric data)."""
        rows = await ctx.run(node.audit.page, limit, before, action)
        return [AuditEntryOut(seq=x.seq, at=x.at, actor=x.actor, role=x.role, action=x.action,
                              outcome=x.outcome, purpose=x.purpose, agreement=x.agreement,
                              message_ids=list(x.message_ids), details=dict(x.details),
                              digest=x.digest) for x in rows]

    @r.get("/audit/verify", response_model=VerificationOut, tags=["audit"])
    async def verify(actor: Verifier,
                     witness: bool = Query(True, description="check against the heads the "
                                                             "hub witnessed")
                     ) -> VerificationOut:
        """Verify the chain: every edited, deleted, reordered or inserted entry is named;
        against the hub's witnessed heads, a trail cut short or rewritten is caught."""

        def work() -> tuple[Any, list[Witness]]:
            heads: list[Witness] = []
            if witness:
                with hub() as client:
                    heads = [Witness(seq, digest) for seq, digest in client.audit_heads()]
            return node.audit.verify(heads), heads

        result, heads = await ctx.run(work)
        return VerificationOut(
            intact=result.intact, entries=result.entries,
            head_seq=result.head.seq if result.head else None,
            head_digest=result.head.digest if result.head else None,
            witnessed=witness,
            witnessed_up_to=max((w.seq for w in heads), default=None),
            problems=[ProblemOut(seq=p.seq, kind=p.kind, message=p.message)
                      for p in result.problems])

    @r.get("/audit/report", tags=["audit"], response_model=None,
           responses={200: {"content": {"text/csv": {}}}})
    async def report(actor: Dpo,
                     agreement: str | None = Query(None, max_length=64),
                     start: date | None = Query(None, alias="from",
                                                description="first day (UTC), included"),
                     end: date | None = Query(None, alias="to",
                                              description="last day (UTC), included"),
                     format: Literal["json", "csv"] = "json") -> Any:
        """The data-protection report per agreement and period (default: the last 30
        days): checks by type and purpose, hits, step-2 decisions, response times, quota
        use (docs/audit.md). The trail is verified as it is read, against the heads the
        hub witnessed when the hub can be reached; a trail that is not intact is refused
        (409 audit_broken)."""
        from lintas.node import report as reports

        def work() -> Any:
            first, last = reports.default_period()
            witnesses: list[Any] = []
            try:
                with hub() as client:
                    witnesses = [Witness(seq, digest) for seq, digest in client.audit_heads()]
            except HubUnavailable:
                pass  # the chain is still verified against itself
            return reports.build_report(node, agreement, start or first, end or last,
                                        witnesses=witnesses)

        result = await ctx.run(work)
        if format == "csv":
            return PlainTextResponse(reports.to_csv(result), media_type="text/csv")
        return result.as_dict()

    # --- messages (diagnostics) --------------------------------------------------------

    @r.post("/diagnostics", status_code=202, response_model=Queued, tags=["messages"])
    async def send_diagnostic(req: DiagnosticRequest, actor: Admin) -> Queued:
        """Queue a `diagnostic.ping` to a member; its node answers with a pong."""
        if not is_member_code(req.to):
            raise e.BadRequest(f"to: {req.to!r} is not a member code (e.g. IDN)")
        if req.to == node.member:
            raise e.BadRequest("to: a node cannot send to itself")
        body: dict[str, Any] = {"text": req.text}
        if not req.reply:
            body["reply"] = False
        msg_id = await ctx.run(node.enqueue, "diagnostic.ping", req.to, body)
        ctx.wake_sender()
        return Queued(id=msg_id)

    @r.get("/inbox", response_model=list[InboxEntry], tags=["messages"])
    async def inbox(actor: Admin, limit: int = Query(50, ge=1, le=1000)) -> list[InboxEntry]:
        """Received messages, newest first (probes and disclosed data redacted)."""
        rows = await ctx.run(node.inbox, limit)
        return [InboxEntry(id=x.id, sender=x.sender, type=x.type, created=x.created_at,
                           received=x.received_at, in_reply_to=x.in_reply_to,
                           body=json.loads(x.body)) for x in rows]

    @r.get("/outbox", response_model=list[OutboxEntry], tags=["messages"])
    async def outbox(actor: Admin, limit: int = Query(50, ge=1, le=1000)) -> list[OutboxEntry]:
        rows = await ctx.run(node.outbox, limit)
        return [OutboxEntry(id=x.id, recipient=x.recipient, type=x.type, status=x.status,
                            attempts=x.attempts, created=x.created_at, sent_at=x.sent_at,
                            last_error=x.last_error) for x in rows]

    return r
