"""schemathesis against the node's OpenAPI document, on a real server: whatever a
client sends that the schema allows (and much it does not), the node never answers with
a server error, and every refusal has the documented error shape.

Each operation is called as a user holding one of the roles it allows (its `x-roles`),
so the requests reach the endpoint's own validation, not only the role check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from lintas.node.app import create_app
from lintas.node.runtime import Node
from lintas.node.users import Principal
from tests.conftest import HubFixture, ServerThread

EXAMPLES = 20  # per operation and mode: about 1,800 requests in all


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def node_server(hub: HubFixture, make_node: Callable[..., Node]
                ) -> Iterator[tuple[str, dict[str, str]]]:
    node = make_node("AUS")
    make_node("IDN")  # a partner to address
    admin = Principal("cli:test", "admin")
    tokens = {"admin": node.api_token}  # type: ignore[attr-defined]
    for role in ("officer", "supervisor", "dpo"):
        _, tokens[role] = node.users.add(f"fuzz-{role}", role, admin)
    with ServerThread(create_app(node)) as server:
        yield server.url, tokens


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error(node_server: tuple[str, dict[str, str]], mode: GenerationMode) -> None:
    url, tokens = node_server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        roles = operation.definition.raw.get("x-roles") or ["admin"]
        case_headers = {"Authorization": f"Bearer {tokens[roles[-1]]}"}

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            # called within this iteration: the loop variable is the one meant
            response = case.call(base_url=url, headers=case_headers)  # noqa: B023
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:200]}")
            elif response.status_code >= 400:
                try:
                    error = response.json()["error"]
                    assert error["code"] and error["message"]
                except (ValueError, KeyError, TypeError, AssertionError):
                    failures.append(f"{case.method} {case.formatted_path} -> "
                                    f"{response.status_code} not in the error shape: "
                                    f"{response.text[:200]}")

        try:
            call()
        except Unsatisfiable:  # nothing invalid to send (e.g. no parameters at all)
            assert mode == GenerationMode.NEGATIVE
    assert operations >= 40
    assert not failures, "\n".join(sorted(set(failures)))
