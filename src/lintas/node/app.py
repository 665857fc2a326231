"""The node's REST API (OpenAPI at /docs) and its background loops.

Loops: the outbox sender, the mailbox long-poller and the directory refresher. All of
them connect *out* to the hub; nothing here listens for the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lintas import __version__
from lintas.node.hub_client import AsyncMailbox, HubClient, HubUnavailable
from lintas.node.runtime import Node, NodeError
from lintas.protocol import errors as e
from lintas.protocol.members import is_member_code
from lintas.protocol.messages import MAX_DIAGNOSTIC_TEXT
from lintas.storage import utcnow

log = logging.getLogger("lintas.node")

POLL_WAIT_S = 20.0
DIRECTORY_EVERY_S = 60.0
AUDIT_HEAD_EVERY_S = 60.0  # how often the hub is asked to witness a new audit head


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


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


class Health(BaseModel):
    status: str
    member: str
    version: str
    hub_url: str
    last_hub_contact: datetime | None
    last_hub_error: str | None
    counts: dict[str, int]


bearer = HTTPBearer(auto_error=False, description="API token printed by `lintas node init`")

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 409, 422, 503)
}


def create_app(node: Node, run_loops: bool = True) -> FastAPI:
    wake_sender = asyncio.Event()

    async def forever(name: str, step: Callable[[], Awaitable[float]]) -> None:
        failures = 0
        while True:
            try:
                pause = await step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (HubUnavailable, e.ProtocolError, NodeError) as exc:
                failures += 1
                node.last_error = f"{name}: {exc}"
                pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("%s: %s (retry in %.1fs)", name, exc, pause)
            except Exception as exc:  # a loop must survive a database restart
                failures += 1
                pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
            await asyncio.sleep(pause)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        clients: list[HubClient] = []
        if run_loops:
            sender_c, dir_c, audit_c = (HubClient(node.hub_url, node.member, node.signing_key())
                                        for _ in range(3))
            clients = [sender_c, dir_c, audit_c]
            mailbox = AsyncMailbox(node.hub_url, node.member, node.signing_key())

            async def directory_step() -> float:
                await run_in_threadpool(node.refresh_directory, dir_c)
                return DIRECTORY_EVERY_S

            async def sender_step() -> float:
                sender_c.key = node.signing_key()
                # Cleared before reading the outbox, so that a message queued while we
                # send still wakes the next round.
                wake_sender.clear()
                if await run_in_threadpool(node.send_due, sender_c):
                    return 0.0  # there may be more
                due = await run_in_threadpool(node.next_due)
                wait = 5.0
                if due is not None:
                    wait = max(0.0, min(wait, (due - utcnow()).total_seconds()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake_sender.wait(), wait)
                return 0.0

            async def poll_step() -> float:
                mailbox.key = node.signing_key()
                items = await mailbox.mailbox(POLL_WAIT_S)
                node.last_contact, node.last_error = utcnow(), None
                if items:
                    # Ack only after every envelope is committed (or recorded as rejected).
                    if await run_in_threadpool(node.handle, items, dir_c):
                        wake_sender.set()  # replies (pongs) may be waiting
                    await mailbox.ack([item["id"] for item in items])
                return 0.0

            async def witness_step() -> float:
                audit_c.key = node.signing_key()
                await run_in_threadpool(node.publish_audit_head, audit_c)
                return AUDIT_HEAD_EVERY_S

            tasks = [asyncio.create_task(forever("audit head", witness_step)),
                     asyncio.create_task(forever("directory", directory_step)),
                     asyncio.create_task(forever("outbox", sender_step)),
                     asyncio.create_task(forever("mailbox", poll_step))]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in clients:
            client.close()
        if run_loops:
            await mailbox.aclose()

    app = FastAPI(title=f"Lintas node {node.member}", version=__version__, lifespan=lifespan,
                  description="A member's national node. Authenticate with the API token "
                              "printed by `lintas node init` (Authorization: Bearer ...).")

    @app.exception_handler(e.ProtocolError)
    async def protocol_error(_: Request, exc: e.ProtocolError) -> JSONResponse:
        return JSONResponse(exc.as_json(), status_code=exc.status)

    @app.exception_handler(NodeError)
    async def node_error(_: Request, exc: NodeError) -> JSONResponse:
        return JSONResponse({"error": {"code": "node_not_ready", "message": str(exc)}},
                            status_code=503)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        err = e.BadRequest(f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse(err.as_json(), status_code=err.status)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": {"code": "internal_error",
                                       "message": "the node could not complete the request"}},
                            status_code=503)

    def authorised(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if creds is None or node.authenticate(creds.credentials) is None:
            raise e.Unauthorized("Authorization: a valid 'Bearer <API token>' is required")

    auth = [Depends(authorised)]

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        counts = await run_in_threadpool(node.counts)
        ok = node.last_contact is not None and node.last_error is None
        return Health(status="ok" if ok else "degraded", member=node.member, version=__version__,
                      hub_url=node.hub_url, last_hub_contact=node.last_contact,
                      last_hub_error=node.last_error, counts=counts)

    @app.post("/api/v1/diagnostics", status_code=202, response_model=Queued,
              responses=ERRORS, dependencies=auth, tags=["messages"])
    async def send_diagnostic(req: DiagnosticRequest) -> Queued:
        """Queue a `diagnostic.ping` to a member; its node answers with a pong."""
        if not is_member_code(req.to):
            raise e.BadRequest(f"to: {req.to!r} is not a member code (e.g. IDN)")
        if req.to == node.member:
            raise e.BadRequest("to: a node cannot send to itself")
        body: dict[str, Any] = {"text": req.text}
        if not req.reply:
            body["reply"] = False
        msg_id = await run_in_threadpool(node.enqueue, "diagnostic.ping", req.to, body)
        wake_sender.set()
        return Queued(id=msg_id)

    @app.get("/api/v1/inbox", response_model=list[InboxEntry], responses=ERRORS,
             dependencies=auth, tags=["messages"])
    async def inbox(limit: int = Query(50, ge=1, le=1000)) -> list[InboxEntry]:
        rows = await run_in_threadpool(node.inbox, limit)
        return [InboxEntry(id=r.id, sender=r.sender, type=r.type, created=r.created_at,
                           received=r.received_at, in_reply_to=r.in_reply_to,
                           body=json.loads(r.body)) for r in rows]

    @app.get("/api/v1/outbox", response_model=list[OutboxEntry], responses=ERRORS,
             dependencies=auth, tags=["messages"])
    async def outbox(limit: int = Query(50, ge=1, le=1000)) -> list[OutboxEntry]:
        rows = await run_in_threadpool(node.outbox, limit)
        return [OutboxEntry(id=r.id, recipient=r.recipient, type=r.type, status=r.status,
                            attempts=r.attempts, created=r.created_at, sent_at=r.sent_at,
                            last_error=r.last_error) for r in rows]

    return app
