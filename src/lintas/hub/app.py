"""The hub's HTTP API (OpenAPI at /docs). Stateless over its database: run several
processes behind a load balancer on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lintas import __version__
from lintas.crypto import KeyPair, fingerprint
from lintas.hub import agreements, registry, witness
from lintas.hub.relay import LEASE, Relay
from lintas.protocol import errors as e
from lintas.protocol.timefmt import format_time
from lintas.storage import Database

log = logging.getLogger("lintas.hub")

MAX_WAIT_S = 30.0
# How often a long-poll re-reads the database for envelopes admitted by another hub
# process; envelopes admitted by this process wake the poll at once.
CROSS_PROCESS_POLL_S = 0.2
PURGE_EVERY_S = 30.0
ENVELOPE_MEDIA_TYPE = "application/jose"
MAX_BATCH = 200


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Accepted(BaseModel):
    id: str
    status: str = "accepted"


class BatchSubmit(BaseModel):
    envelopes: list[str] = Field(min_length=1, max_length=MAX_BATCH,
                                 description="envelopes in JWS compact serialization")


class BatchOutcome(BaseModel):
    index: int
    id: str | None
    status: str = Field(description="accepted or refused")
    error: ErrorBody | None = None


class BatchResult(BaseModel):
    results: list[BatchOutcome]


class MailboxItem(BaseModel):
    id: str
    envelope: str


class Mailbox(BaseModel):
    envelopes: list[MailboxItem]
    lease_seconds: int


class AckRequest(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)


class AckResult(BaseModel):
    acked: int


class AuditHeadIn(BaseModel):
    seq: int = Field(ge=1, le=2**31 - 1, description="number of the last audit entry")
    digest: str = Field(pattern="^[0-9a-f]{64}$", description="its SHA-256 digest, hex")


class AuditHeadOut(BaseModel):
    seq: int
    digest: str
    received_at: str = Field(description="when the hub first witnessed it (RFC 3339, UTC)")


class AuditHeads(BaseModel):
    heads: list[AuditHeadOut]


class AgreementIn(BaseModel):
    document: str = Field(min_length=2, max_length=64 * 1024,
                          description="the countersigned agreement: a JWS in General JSON "
                                      "Serialization, as text (docs/agreements.md)")


class StatusNoticeIn(BaseModel):
    notice: str = Field(min_length=5, max_length=64 * 1024,
                        description="a party's signed status notice (compact JWS)")


class AgreementOut(BaseModel):
    id: str
    proposer: str
    counterparty: str
    status: str = Field(description="as registered: active, suspended or terminated")
    state: str = Field(description="what applies now: the status, or not_yet_valid / "
                                   "expired by the validity dates")
    status_reason: str | None
    document: str
    status_notice: str | None
    registered_at: str
    updated_at: str


class AgreementList(BaseModel):
    agreements: list[AgreementOut]


def _agreement_out(v: agreements.AgreementView) -> AgreementOut:
    return AgreementOut(id=v.id, proposer=v.proposer, counterparty=v.counterparty,
                        status=v.status, state=v.state, status_reason=v.status_reason,
                        document=v.document, status_notice=v.status_notice,
                        registered_at=format_time(v.registered_at),
                        updated_at=format_time(v.updated_at))


class HubKeyInfo(BaseModel):
    jwk: dict[str, Any]
    fingerprint: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


def create_app(db: Database, hub_key: KeyPair, max_envelope_bytes: int | None = None) -> FastAPI:
    relay = Relay(db) if max_envelope_bytes is None else Relay(db, max_envelope_bytes)
    arrivals: dict[str, asyncio.Event] = {}

    async def purge_loop() -> None:
        while True:
            try:
                await run_in_threadpool(relay.purge)
            except Exception:  # keep purging even if one round fails (e.g. DB restart)
                log.exception("purge failed; retrying")
            await asyncio.sleep(PURGE_EVERY_S)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_loop())
        yield
        task.cancel()

    app = FastAPI(
        title="Lintas hub",
        version=__version__,
        description="Member directory and sealed-envelope relay. See docs/protocol.md.",
        lifespan=lifespan,
    )

    @app.exception_handler(e.ProtocolError)
    async def protocol_error(_: Request, exc: e.ProtocolError) -> JSONResponse:
        return JSONResponse(exc.as_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        err = e.BadRequest(f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse(err.as_json(), status_code=err.status)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return JSONResponse(
            {"error": {"code": "internal_error",
                       "message": "the hub could not complete the request; try again"}},
            status_code=503,
        )

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/hub-key", response_model=HubKeyInfo, tags=["directory"])
    async def hub_public_key() -> HubKeyInfo:
        """The hub's public signing key, to pin at `lintas node init` after comparing its
        fingerprint out of band."""
        return HubKeyInfo(jwk=hub_key.public_jwk(), fingerprint=fingerprint(hub_key.public()))

    @app.get(
        "/v1/directory",
        response_class=PlainTextResponse,
        tags=["directory"],
        responses={200: {"content": {ENVELOPE_MEDIA_TYPE: {}}}},
    )
    async def directory() -> PlainTextResponse:
        """The member directory as a JWS signed by the hub key (typ lintas-directory+jws)."""
        doc = await run_in_threadpool(registry.signed_directory, db, hub_key)
        return PlainTextResponse(doc, media_type=ENVELOPE_MEDIA_TYPE)

    @app.post(
        "/v1/envelopes",
        status_code=202,
        response_model=Accepted,
        responses=ERRORS,
        tags=["relay"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {ENVELOPE_MEDIA_TYPE: {"schema": {"type": "string"}}},
            }
        },
    )
    async def submit(request: Request) -> Accepted:
        """Submit one sealed envelope (JWS compact serialization, ASCII)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > relay.max_envelope_bytes:
            raise e.EnvelopeTooLarge(
                f"the envelope has {declared} bytes; this hub accepts at most "
                f"{relay.max_envelope_bytes}"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > relay.max_envelope_bytes:
                raise e.EnvelopeTooLarge(
                    f"the envelope is larger than {relay.max_envelope_bytes} bytes"
                )
            chunks.append(chunk)
        parsed = await run_in_threadpool(relay.admit, b"".join(chunks))
        wake(parsed.header.recipient)
        return Accepted(id=parsed.header.id)

    @app.post("/v1/envelopes/batch", response_model=BatchResult, responses=ERRORS,
              tags=["relay"])
    async def submit_batch(request: Request) -> BatchResult:
        """Submit up to 200 envelopes at once. Each is judged on its own: the answer lists,
        in order, which were accepted and which refused with which error."""
        limit = relay.max_envelope_bytes * 2 + 64 * 1024
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise e.EnvelopeTooLarge(f"a batch may carry at most {limit} bytes")
        try:
            body = BatchSubmit.model_validate_json(await request.body())
        except ValueError as exc:
            raise e.BadRequest(f"envelopes: {str(exc).splitlines()[0]}") from None
        raws = [env.encode("utf-8") for env in body.envelopes]
        outcomes = await run_in_threadpool(relay.admit_many, raws)
        results = []
        for i, o in enumerate(outcomes):
            if isinstance(o, e.ProtocolError):
                results.append(BatchOutcome(index=i, id=None, status="refused",
                                            error=ErrorBody(code=o.code, message=o.message)))
            else:
                wake(o.header.recipient)
                results.append(BatchOutcome(index=i, id=o.header.id, status="accepted"))
        return BatchResult(results=results)

    def wake(recipient: str) -> None:
        event = arrivals.get(recipient)
        if event is not None:
            event.set()

    @app.get("/v1/mailbox", response_model=Mailbox, responses=ERRORS, tags=["relay"])
    async def mailbox(
        request: Request,
        wait: float = Query(20.0, ge=0, le=MAX_WAIT_S, description="long-poll seconds"),
        limit: int = Query(100, ge=1, le=500),
    ) -> Mailbox:
        """Long-poll the caller's mailbox. Each envelope is leased to this caller for
        `lease_seconds`; acknowledge it after committing, or it is offered again."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "GET", "/v1/mailbox"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        event = arrivals.setdefault(member, asyncio.Event())
        while True:
            event.clear()
            items = await run_in_threadpool(relay.lease, member, limit)
            remaining = deadline - loop.time()
            if items or remaining <= 0 or await request.is_disconnected():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, CROSS_PROCESS_POLL_S))
        return Mailbox(
            envelopes=[MailboxItem(id=i.id, envelope=i.envelope) for i in items],
            lease_seconds=int(LEASE.total_seconds()),
        )

    @app.post("/v1/mailbox/ack", response_model=AckResult, responses=ERRORS, tags=["relay"])
    async def ack(request: Request, body: AckRequest) -> AckResult:
        """Acknowledge envelopes: the hub drops their payloads at once."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "POST", "/v1/mailbox/ack",
            await request.body(),
        )
        return AckResult(acked=await run_in_threadpool(relay.ack, member, body.ids))

    @app.post("/v1/audit/heads", response_model=AuditHeadOut, responses=ERRORS, tags=["audit"])
    async def publish_audit_head(request: Request, body: AuditHeadIn) -> AuditHeadOut:
        """Witness the caller's audit chain head. Idempotent; a head behind one already
        witnessed, or another digest for a witnessed number, is refused
        (audit_head_conflict): the caller's history was cut or rewritten."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "POST",
            "/v1/audit/heads", await request.body(),
        )
        head = await run_in_threadpool(witness.record, db, member, body.seq, body.digest)
        return AuditHeadOut(seq=head.seq, digest=head.digest,
                            received_at=format_time(head.received_at))

    @app.post("/v1/agreements", response_model=AgreementOut, responses=ERRORS,
              tags=["agreements"])
    async def register_agreement(request: Request, body: AgreementIn) -> AgreementOut:
        """Register a countersigned agreement; the caller must be one of its parties.
        Both signatures are checked against the member directory. Idempotent for the
        same terms; another agreement under a registered id is refused
        (agreement_conflict)."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "POST",
            "/v1/agreements", await request.body(),
        )
        view = await run_in_threadpool(agreements.register, db, member, body.document)
        return _agreement_out(view)

    @app.post("/v1/agreements/{agreement_id}/status", response_model=AgreementOut,
              responses=ERRORS, tags=["agreements"])
    async def agreement_status(request: Request, agreement_id: str,
                               body: StatusNoticeIn) -> AgreementOut:
        """Suspend, resume or terminate an agreement with a party's signed status notice.
        From then on the relay refuses new checks under it (termination: also their
        answers)."""
        path = f"/v1/agreements/{agreement_id}/status"
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "POST", path,
            await request.body(),
        )
        view = await run_in_threadpool(agreements.change_status, db, member, agreement_id,
                                       body.notice)
        return _agreement_out(view)

    @app.get("/v1/agreements", response_model=AgreementList, responses=ERRORS,
             tags=["agreements"])
    async def list_agreements(request: Request) -> AgreementList:
        """The caller's registered agreements with their status."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "GET", "/v1/agreements"
        )
        views = await run_in_threadpool(agreements.for_member, db, member)
        return AgreementList(agreements=[_agreement_out(v) for v in views])

    @app.get("/v1/audit/heads", response_model=AuditHeads, responses=ERRORS, tags=["audit"])
    async def audit_heads(
        request: Request,
        after: int = Query(0, ge=0, description="only heads with a higher number"),
        limit: int = Query(1000, ge=1, le=5000),
    ) -> AuditHeads:
        """The caller's own witnessed audit chain heads, in order: what `lintas audit
        verify --hub` checks the node's trail against."""
        member = await run_in_threadpool(
            relay.authenticate, request.headers.get("authorization"), "GET", "/v1/audit/heads"
        )
        found = await run_in_threadpool(witness.heads, db, member, after, limit)
        return AuditHeads(heads=[AuditHeadOut(seq=h.seq, digest=h.digest,
                                              received_at=format_time(h.received_at))
                                 for h in found])

    return app
