"""Checks: submitted by officers to a partner, reviewed and decided by supervisors."""


import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from lintas.node.api.common import ERRORS, Context, NotFound
from lintas.node.checks import CheckView
from lintas.node.samples import B64_MAX, FingerInput, decode_base64, samples
from lintas.node.users import Principal
from lintas.policy import PURPOSES, QUERY_TYPES
from lintas.policy.agreements import DATA_CATEGORIES


class FingerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position: int = Field(ge=1, le=10, description="1 right thumb ... 10 left little")
    kind: Literal["image", "template"] = Field(
        "image", description="image: PNG, TIFF, BMP, JPEG or WSQ; template: ISO/IEC "
                             "19794-2 (2005 or 2011) or ANSI/INCITS 378 minutiae")
    data: str = Field(min_length=1, max_length=B64_MAX, description="the file, base64")
    ppi: float | None = Field(None, ge=100, le=2000,
                              description="the image's resolution, when its file does not say")


def finger_inputs(fingers: list[FingerIn], field: str = "fingers") -> list[FingerInput]:
    return [FingerInput(f.position, f.kind, decode_base64(f.data, f"{field}[{i}].data"), f.ppi)
            for i, f in enumerate(fingers)]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mrz: str | None = Field(None, max_length=200, description="the machine-readable zone, "
                                                             "lines separated by a newline")
    number: str | None = Field(None, max_length=20)
    issuing_state: str | None = Field(None, max_length=3)


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partner: str = Field(description="the member asked, e.g. IDN", max_length=10)
    agreement: str = Field(max_length=64)
    purpose: Literal[PURPOSES]  # type: ignore[valid-type]
    query_type: Literal[QUERY_TYPES]  # type: ignore[valid-type]
    fingers: list[FingerIn] = Field(default_factory=list, max_length=10)
    ansi_nist: str | None = Field(None, max_length=B64_MAX,
                                  description="an ANSI/NIST-ITL 1-2011 transaction, base64")
    target: str | None = Field(None, max_length=64,
                               description="fingerprint_1to1: the partner's record")
    document: DocumentIn | None = None
    max_candidates: int | None = Field(None, ge=1, le=100)


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
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
    hit_fpir: float | None = Field(
        None, description="fingerprint checks: the search rate at or below which the "
                          "responder reports a candidate, as the agreement sets it")


class DisclosureRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate: str = Field(max_length=16, examples=["c1"])
    categories: list[Literal[DATA_CATEGORIES]] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=len(DATA_CATEGORIES))
    justification: str = Field(min_length=1, max_length=2000)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: list[Literal[DATA_CATEGORIES]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(DATA_CATEGORIES),
        description="the categories disclosed (all requested: approved; some: partial; "
                    "none: denied, with a reason)")
    reason: str | None = Field(None, max_length=2000)


MAX_WAIT_S = 60.0
RECHECK_S = 1.0


def out(view: CheckView) -> CheckOut:
    return CheckOut.model_validate(view)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix="/api/v1/checks", tags=["checks"], responses=ERRORS)
    checks = ctx.services.checks
    Officer = Annotated[Principal, ctx.allow("officer")]  # noqa: N806
    Either = Annotated[Principal, ctx.allow("officer", "supervisor")]  # noqa: N806
    Supervisor = Annotated[Principal, ctx.allow("supervisor")]  # noqa: N806

    @r.post("", status_code=201, response_model=CheckOut)
    async def submit(req: CheckIn, actor: Officer) -> CheckOut:
        """Check a person (fingerprints: images, ISO/ANSI templates or an ANSI/NIST-ITL
        transaction) or a travel document (MRZ, or number and issuing state) against a
        partner, under an agreement. Refused, with the field named, before anything is
        stored or sent; otherwise queued to the partner (`state` submitted)."""

        def work() -> CheckView:
            given = None
            if req.fingers or req.ansi_nist:
                given = samples(finger_inputs(req.fingers),
                                decode_base64(req.ansi_nist, "ansi_nist")
                                if req.ansi_nist else None)
            document = (req.document.model_dump(exclude_none=True)
                        if req.document is not None else None)
            return checks.submit(actor, req.partner, req.agreement, req.purpose,
                                 req.query_type, fingers=given, target=req.target,
                                 document=document, max_candidates=req.max_candidates)

        view = await ctx.run(work)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    @r.get("", response_model=list[CheckOut])
    async def recent(actor: Either,
                     side: Literal["requester", "responder"] | None = None,
                     state: str | None = Query(None, max_length=32),
                     limit: int = Query(50, ge=1, le=1000)) -> list[CheckOut]:
        """Recent checks, newest first: ours (`requester`) and partners' (`responder`)."""
        return [out(v) for v in await ctx.run(checks.recent, side, state, limit)]

    @r.get("/{check_id}", response_model=CheckOut)
    async def get(check_id: str, actor: Either,
                  changed_from: str | None = Query(
                      None, max_length=32, description="A long poll: answer once the check "
                      "is no longer in this state (the one last seen), or after `wait`."),
                  wait: float = Query(0, ge=0, le=MAX_WAIT_S, description="Seconds to wait "
                                      "for a change of state, with `changed_from`.")
                  ) -> CheckOut:
        """One check. With `changed_from` and `wait`, the answer waits until the check
        leaves that state (an answer arrives, a review ends...) or `wait` seconds pass,
        so that following a check costs one request per change, not a poll a second."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            view = await ctx.run(checks.get, check_id)
            if view is None:
                raise NotFound(f"check: {check_id!r} is not a check of this node")
            left = deadline - loop.time()
            if changed_from is None or view.state != changed_from or left <= 0:
                return out(view)
            # Re-read at least every RECHECK_S: a change made by another process (a CLI
            # run beside the node) fires no signal here.
            await ctx.changes.wait(min(left, RECHECK_S))

    @r.post("/{check_id}/disclosure-request", response_model=CheckOut)
    async def request_disclosure(check_id: str, req: DisclosureRequestIn,
                                 actor: Officer) -> CheckOut:
        """Step 2: ask the partner for the record behind a hit (the categories the
        agreement allows), saying why."""
        view = await ctx.run(checks.request_disclosure, actor, check_id, req.candidate,
                             req.categories, req.justification)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    @r.post("/{check_id}/cancel", response_model=CheckOut)
    async def cancel(check_id: str, req: ReasonIn, actor: Either) -> CheckOut:
        view = await ctx.run(checks.cancel, actor, check_id, req.reason)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    @r.post("/{check_id}/close", response_model=CheckOut)
    async def close(check_id: str, actor: Either) -> CheckOut:
        view = await ctx.run(checks.close, actor, check_id)
        ctx.changes.fire()
        return out(view)

    @r.post("/{check_id}/release", response_model=CheckOut)
    async def release(check_id: str, actor: Supervisor) -> CheckOut:
        """Review mode: let a partner's held request be matched and answered."""
        view = await ctx.run(checks.release, actor, check_id)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    @r.post("/{check_id}/reject", response_model=CheckOut)
    async def reject(check_id: str, req: ReasonIn, actor: Supervisor) -> CheckOut:
        """Review mode: refuse a partner's held request; its probe is destroyed."""
        view = await ctx.run(checks.reject, actor, check_id, req.reason)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    @r.post("/{check_id}/decision", response_model=CheckOut)
    async def decide(check_id: str, req: DecisionIn, actor: Supervisor) -> CheckOut:
        """Step 2 at the responder: disclose all the requested categories, some of them,
        or none (with a reason)."""
        view = await ctx.run(checks.decide, actor, check_id, req.approve, req.reason)
        ctx.wake_sender()
        ctx.changes.fire()
        return out(view)

    return r
