"""What every route of the node's API shares: who may call it, and how errors look.

Each route states the roles allowed to call it in one place, its `allow(...)`
dependency; `document_roles` copies them into the OpenAPI document (`x-roles`, and a
line of the description), so /docs always shows what the code enforces. The domain
objects check the role again (`lintas.node.users.require_role`): two locks, one key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from lintas.node.services import Services
from lintas.node.users import ROLES, Principal
from lintas.protocol import errors as e

T = TypeVar("T")


class Forbidden(e.ProtocolError):
    code = "forbidden"
    status = 403


class NotFound(e.ProtocolError):
    code = "not_found"
    status = 404


class Conflict(e.ProtocolError):
    code = "conflict"
    status = 409


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 409, 422, 429, 503)
}

bearer = HTTPBearer(auto_error=False, description="A user's API token (`lintas user add`; the "
                                                  "first admin's is printed by `lintas node "
                                                  "init`)")


class Changes:
    """A signal, in the event loop, that checks may have changed state: fired after the
    mailbox loop stores what arrived and after the check worker moves a check, so that
    a long poll (`GET /api/v1/checks/{id}?changed_from=`) answers at once instead of
    being asked again and again."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


@dataclass
class Context:
    """What the routes need: the node's parts and the loops' wake-up calls."""

    services: Services
    wake_sender: Callable[[], None]
    wake_worker: Callable[[], None]
    changes: Changes = field(default_factory=Changes)

    def allow(self, *roles: str) -> Any:
        """A dependency giving the caller, refused unless in one of `roles`."""
        unknown = [r for r in roles if r not in ROLES]
        assert not unknown, f"unknown roles {unknown}"
        node = self.services.node

        def caller(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                   ) -> Principal:
            principal = node.authenticate(creds.credentials) if creds is not None else None
            if principal is None:
                raise e.Unauthorized("Authorization: a valid 'Bearer <API token>' is required")
            if principal.role not in roles:
                raise Forbidden(f"role: {principal.role} may not do this (allowed: "
                                f"{', '.join(roles)})")
            return principal

        caller.roles = roles  # type: ignore[attr-defined]
        return Depends(caller)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (database, matching) off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)


def route_roles(route: APIRoute) -> tuple[str, ...] | None:
    for dependency in route.dependant.dependencies:
        roles = getattr(dependency.call, "roles", None)
        if roles is not None:
            return tuple(roles)
    return None


def document_roles(router: APIRouter) -> None:
    for route in router.routes:
        if isinstance(route, APIRoute):
            roles = route_roles(route)
            if roles is not None:
                route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": list(roles)}
                route.description = (route.description or "").rstrip() + \
                    f"\n\nRoles: {', '.join(roles)}."
