"""Every endpoint of the node's API, as every role: who may call it, through a real server.

The table below is written from the issue's role definitions, independently of the
code: officer submits checks; supervisor reviews and decides step 2; the data-protection
officer sees the audit and reports only; the administrator runs the gallery, the
register, agreements and users. A new endpoint fails `test_the_table_covers_every_route`
until it is placed in the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from lintas.node.app import create_app
from lintas.node.runtime import Node
from lintas.node.users import ROLES, Principal
from tests.conftest import HubFixture, ServerThread

ALL = frozenset(ROLES)
OFFICER, SUPERVISOR, DPO, ADMIN = (frozenset({r}) for r in ROLES)
OFFICER_OR_SUPERVISOR = OFFICER | SUPERVISOR
ADMIN_OR_SUPERVISOR = ADMIN | SUPERVISOR

EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    # checks
    ("POST", "/api/v1/checks"): OFFICER,
    ("GET", "/api/v1/checks"): OFFICER_OR_SUPERVISOR,
    ("GET", "/api/v1/checks/{check_id}"): OFFICER_OR_SUPERVISOR,
    ("POST", "/api/v1/checks/{check_id}/disclosure-request"): OFFICER,
    ("POST", "/api/v1/checks/{check_id}/cancel"): OFFICER_OR_SUPERVISOR,
    ("POST", "/api/v1/checks/{check_id}/close"): OFFICER_OR_SUPERVISOR,
    ("POST", "/api/v1/checks/{check_id}/release"): SUPERVISOR,
    ("POST", "/api/v1/checks/{check_id}/reject"): SUPERVISOR,
    ("POST", "/api/v1/checks/{check_id}/decision"): SUPERVISOR,
    # gallery
    ("POST", "/api/v1/gallery/persons"): ADMIN,
    ("GET", "/api/v1/gallery/persons"): ADMIN,
    ("GET", "/api/v1/gallery/persons/{reference}"): ADMIN,
    ("DELETE", "/api/v1/gallery/persons/{reference}"): ADMIN,
    ("PUT", "/api/v1/gallery/persons/{reference}/data"): ADMIN,
    ("GET", "/api/v1/gallery/persons/{reference}/protections"): ADMIN_OR_SUPERVISOR,
    ("POST", "/api/v1/gallery/persons/{reference}/protections"): ADMIN_OR_SUPERVISOR,
    ("POST", "/api/v1/gallery/imports"): ADMIN,
    ("GET", "/api/v1/gallery/imports"): ADMIN,
    ("GET", "/api/v1/gallery/imports/{import_id}"): ADMIN,
    ("GET", "/api/v1/gallery/calibration"): ALL,
    ("PUT", "/api/v1/gallery/calibration"): ADMIN,
    ("DELETE", "/api/v1/gallery/calibration"): ADMIN,
    # document register
    ("GET", "/api/v1/documents"): ADMIN_OR_SUPERVISOR,
    ("GET", "/api/v1/documents/{entry_id}"): ADMIN_OR_SUPERVISOR,
    ("POST", "/api/v1/documents"): ADMIN,
    ("POST", "/api/v1/documents/{entry_id}/withdraw"): ADMIN,
    ("POST", "/api/v1/documents/imports"): ADMIN,
    ("POST", "/api/v1/documents/check"): OFFICER_OR_SUPERVISOR,
    # agreements
    ("GET", "/api/v1/agreements"): ALL,
    ("GET", "/api/v1/agreements/{agreement_id}"): ALL,
    ("POST", "/api/v1/agreements"): ADMIN,
    ("POST", "/api/v1/agreements/{agreement_id}/countersign"): ADMIN,
    ("POST", "/api/v1/agreements/{agreement_id}/decline"): ADMIN,
    ("POST", "/api/v1/agreements/{agreement_id}/status"): ADMIN,
    # users
    ("GET", "/api/v1/me"): ALL,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users/{username}/role"): ADMIN,
    ("POST", "/api/v1/users/{username}/token"): ADMIN,
    ("POST", "/api/v1/users/{username}/disable"): ADMIN,
    # audit
    ("GET", "/api/v1/audit"): DPO,
    ("GET", "/api/v1/audit/verify"): DPO | ADMIN,
    ("GET", "/api/v1/audit/report"): DPO,
    # diagnostics
    ("POST", "/api/v1/diagnostics"): ADMIN,
    ("GET", "/api/v1/inbox"): ADMIN,
    ("GET", "/api/v1/outbox"): ADMIN,
}

# Path parameters that name nothing on this node: an allowed caller gets "not found" (or
# a validation error), never a change.
DUMMY = {"check_id": "00000000-0000-4000-8000-000000000000", "reference": "nobody",
         "import_id": "00000000-0000-4000-8000-000000000000", "entry_id": "999999",
         "agreement_id": "NONE-2027-01", "username": "nobody"}


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:  # the matrix needs one backend only
    return str(request.param)


@pytest.fixture
def served(hub: HubFixture, make_node: Callable[..., Node]
           ) -> Iterator[tuple[str, dict[str, str], object]]:
    node = make_node("AUS")
    admin = Principal("cli:test", "admin")
    tokens = {"admin": node.api_token}  # type: ignore[attr-defined]
    for role in ("officer", "supervisor", "dpo"):
        _, tokens[role] = node.users.add(f"{role}1", role, admin)
    app = create_app(node, run_loops=False)
    with ServerThread(app) as server:
        yield server.url, tokens, app


def test_the_table_covers_every_route(served: tuple[str, dict[str, str], object]) -> None:
    url, _, _ = served
    spec = httpx.get(url + "/openapi.json").json()
    documented = {(method.upper(), path): frozenset(op.get("x-roles", ()))
                  for path, ops in spec["paths"].items() if path.startswith("/api/")
                  for method, op in ops.items()}
    assert set(documented) == set(EXPECTED)
    # What /docs says is what the code enforces (tested below) and what the table says.
    assert {k: v for k, v in documented.items() if v != EXPECTED[k]} == {}
    assert all("Roles: " in ops[m]["description"] for p, ops in spec["paths"].items()
               if p.startswith("/api/") for m in ops)


def test_every_role_on_every_endpoint(served: tuple[str, dict[str, str], object]) -> None:
    url, tokens, _ = served
    wrong: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for (method, template), allowed in sorted(EXPECTED.items()):
            path = re.sub(r"\{(\w+)\}", lambda m: DUMMY[m.group(1)], template)
            body = {} if method in ("POST", "PUT") else None
            r = client.request(method, path, json=body)
            if r.status_code != 401 or r.json()["error"]["code"] != "unauthorized":
                wrong.append(f"{method} {template} without a token: {r.status_code}")
            for role in ROLES:
                r = client.request(method, path, json=body,
                                   headers={"Authorization": f"Bearer {tokens[role]}"})
                assert r.status_code < 500, f"{method} {template} as {role}: {r.text}"
                if role in allowed and r.status_code in (401, 403):
                    wrong.append(f"{method} {template} refused to {role}: {r.text}")
                if role not in allowed and (r.status_code != 403
                                            or r.json()["error"]["code"] != "forbidden"):
                    wrong.append(f"{method} {template} allowed to {role}: {r.status_code}")
    assert wrong == []


def test_a_disabled_user_is_refused(served: tuple[str, dict[str, str], object],
                                    hub: HubFixture) -> None:
    url, tokens, _ = served
    headers = {"Authorization": f"Bearer {tokens['officer']}"}
    assert httpx.get(url + "/api/v1/me", headers=headers).json() == {
        "username": "officer1", "role": "officer", "member": "AUS"}
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    r = httpx.post(url + "/api/v1/users/officer1/disable", json={"reason": "left the service"},
                   headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    assert httpx.get(url + "/api/v1/me", headers=headers).status_code == 401
    # An admin cannot lock the node out: the last admin is never disabled.
    r = httpx.post(url + "/api/v1/users/" + "admin/disable", json={"reason": "x"}, headers=admin)
    assert r.status_code in (400, 404, 409) and "admin" in r.json()["error"]["message"]
