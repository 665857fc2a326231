"""The node's REST API (OpenAPI at /docs) and its background loops.

Loops: the outbox sender, the mailbox long-poller and the directory refresher. All of
them connect *out* to the hub; nothing here listens for the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lintas import __version__
from lintas.documents.mrz import MRZError
from lintas.exchange.workflow import IllegalTransition
from lintas.node.api import admin as admin_api
from lintas.node.api import checks as checks_api
from lintas.node.api import gallery as gallery_api
from lintas.node.api import register as register_api
from lintas.node.api.common import Context, document_roles
from lintas.node.checks import CheckError, UnknownCheck, UnknownPerson
from lintas.node.documents import DocumentConflict, DocumentError, UnknownEntry
from lintas.node.gallery import DuplicateReference, GalleryError, UnknownReference
from lintas.node.hub_client import AsyncMailbox, HubClient, HubUnavailable
from lintas.node.report import BrokenChain, ReportError
from lintas.node.runtime import Node, NodeError
from lintas.node.samples import SampleError
from lintas.node.services import Services
from lintas.node.users import NotPermitted, UnknownUser, UserConflict, UserError
from lintas.policy.agreements import AgreementError
from lintas.protocol import errors as e
from lintas.storage import utcnow

log = logging.getLogger("lintas.node")

POLL_WAIT_S = 20.0
DIRECTORY_EVERY_S = 60.0
AUDIT_HEAD_EVERY_S = 60.0  # default: how often the hub is asked to witness a new head
WORK_EVERY_S = 1.0  # scheduled check work (expiry, retention) at least this often


class Health(BaseModel):
    status: str
    member: str
    version: str
    hub_url: str
    last_hub_contact: datetime | None
    last_hub_error: str | None
    counts: dict[str, int]


def create_app(node: Node | Services, run_loops: bool = True,
               audit_head_every: float = AUDIT_HEAD_EVERY_S) -> FastAPI:
    """The node's API; with `run_loops`, also its background loops. `audit_head_every`:
    seconds between two publications of the audit chain head to the hub's witness."""
    services = node if isinstance(node, Services) else Services.open(node)
    node = services.node
    loop_ready: list[asyncio.AbstractEventLoop] = []
    wake_sender, wake_worker = asyncio.Event(), asyncio.Event()

    def waker(event: asyncio.Event) -> Callable[[], None]:
        def wake() -> None:  # callable from the event loop or from a worker thread
            if loop_ready:
                loop_ready[0].call_soon_threadsafe(event.set)
        return wake

    ctx = Context(services, waker(wake_sender), waker(wake_worker))

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
        loop_ready.append(asyncio.get_running_loop())
        ctx.changes.fire()  # its next event belongs to this event loop
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
                    wake_worker.set()  # the checks follow the hub's verdicts
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
                        wake_sender.set()  # replies (pongs, refusals) may be waiting
                    wake_worker.set()  # received checks wait to be matched
                    ctx.changes.fire()  # answers may have moved checks
                    await mailbox.ack([item["id"] for item in items])
                return 0.0

            async def witness_step() -> float:
                audit_c.key = node.signing_key()
                await run_in_threadpool(node.publish_audit_head, audit_c)
                return audit_head_every

            async def work_step() -> float:
                wake_worker.clear()
                if await run_in_threadpool(services.work):
                    wake_sender.set()  # answers to send
                    ctx.changes.fire()
                    return 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake_worker.wait(), WORK_EVERY_S)
                return 0.0

            tasks = [asyncio.create_task(forever("audit head", witness_step)),
                     asyncio.create_task(forever("directory", directory_step)),
                     asyncio.create_task(forever("outbox", sender_step)),
                     asyncio.create_task(forever("mailbox", poll_step)),
                     asyncio.create_task(forever("checks", work_step))]
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
        loop_ready.clear()

    app = FastAPI(title=f"Lintas node {node.member}", version=__version__, lifespan=lifespan,
                  description="A member's national node. Authenticate with a user's API token "
                              "(Authorization: Bearer ...); each operation lists the roles "
                              "allowed to call it.")

    def error(status: int, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": {"code": code, "message": str(exc)}},
                                status_code=status)
        return handler

    # The most specific class wins (Starlette looks up the exception's MRO).
    for exc_class, status, code in (
            (NotPermitted, 403, "forbidden"), (BrokenChain, 409, "audit_broken"),
            (ReportError, 400, "bad_request"),
            (UnknownUser, 404, "not_found"), (UnknownEntry, 404, "not_found"),
            (UnknownReference, 404, "not_found"), (UnknownCheck, 404, "not_found"),
            (UnknownPerson, 404, "not_found"),
            (UserConflict, 409, "conflict"), (DocumentConflict, 409, "conflict"),
            (DuplicateReference, 409, "conflict"), (IllegalTransition, 409, "illegal_transition"),
            (UserError, 400, "bad_request"), (DocumentError, 400, "bad_request"),
            (GalleryError, 400, "bad_request"), (CheckError, 400, "bad_request"),
            (SampleError, 400, "bad_request"), (AgreementError, 400, "bad_request"),
            (MRZError, 400, "bad_request"),
            (HubUnavailable, 503, "hub_unavailable"), (NodeError, 503, "node_not_ready")):
        app.add_exception_handler(exc_class, error(status, code))

    @app.exception_handler(e.ProtocolError)
    async def protocol_error(_: Request, exc: e.ProtocolError) -> JSONResponse:
        return JSONResponse(exc.as_json(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (an unparsable body, an unknown path, a wrong method)
        in the API's error shape."""
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(exc.status_code, "http_error")
        message = "body: not valid JSON" if exc.status_code == 400 else str(exc.detail)
        return JSONResponse({"error": {"code": code, "message": message}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        err = e.BadRequest(f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse(err.as_json(), status_code=err.status)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": {"code": "internal_error",
                                       "message": "the node could not complete the request"}},
                            status_code=503)

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        counts = await run_in_threadpool(node.counts)
        ok = node.last_contact is not None and node.last_error is None
        return Health(status="ok" if ok else "degraded", member=node.member, version=__version__,
                      hub_url=node.hub_url, last_hub_contact=node.last_contact,
                      last_hub_error=node.last_error, counts=counts)

    for module in (checks_api, gallery_api, register_api, admin_api):
        router = module.router(ctx)
        document_roles(router)
        app.include_router(router)
    return app
