"""The node's REST API and background loops, through real servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from lintas.node.app import create_app
from lintas.node.runtime import Node
from tests.conftest import HubFixture, ServerThread


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def two_nodes(hub: HubFixture, make_node: Callable[..., Node]):
    aus, idn = make_node("AUS"), make_node("IDN")
    with ServerThread(create_app(aus)) as a, ServerThread(create_app(idn)) as i:
        yield (a.url, aus.api_token), (i.url, idn.api_token)  # type: ignore[attr-defined]


def test_diagnostic_round_trip_through_the_loops(two_nodes) -> None:
    (aus_url, aus_tok), (idn_url, idn_tok) = two_nodes
    r = httpx.post(aus_url + "/api/v1/diagnostics", json={"to": "IDN", "text": "apa kabar?"},
                   headers={"Authorization": f"Bearer {aus_tok}"})
    assert r.status_code == 202, r.text
    msg_id = r.json()["id"]

    def inbox(url: str, tok: str) -> list[dict]:
        return httpx.get(url + "/api/v1/inbox", headers={"Authorization": f"Bearer {tok}"}).json()

    wait_for(lambda: any(m["in_reply_to"] == msg_id for m in inbox(aus_url, aus_tok)))
    (ping,) = inbox(idn_url, idn_tok)
    assert (ping["sender"], ping["type"], ping["body"]) == ("AUS", "diagnostic.ping",
                                                            {"text": "apa kabar?"})
    out = httpx.get(aus_url + "/api/v1/outbox", headers={"Authorization": f"Bearer {aus_tok}"})
    assert out.json()[0]["status"] == "sent"
    health = httpx.get(aus_url + "/health").json()
    assert health["status"] == "ok" and health["member"] == "AUS"
    assert health["counts"]["inbox"] == 1


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"to": "idn", "text": "x"}, 400, "to"),
        ({"to": "AUS", "text": "x"}, 400, "to"),
        ({"to": "IDN"}, 400, "text"),
        ({"to": "IDN", "text": ""}, 400, "text"),
        ({"to": "IDN", "text": "x" * 5000}, 400, "text"),
        ({"to": "NZL", "text": "x"}, 422, "NZL"),
    ],
)
def test_bad_requests_name_the_field(two_nodes, payload, status, field) -> None:
    (aus_url, aus_tok), _ = two_nodes
    r = httpx.post(aus_url + "/api/v1/diagnostics", json=payload,
                   headers={"Authorization": f"Bearer {aus_tok}"})
    assert r.status_code == status, r.text
    assert field in r.json()["error"]["message"]


def test_api_requires_the_token(two_nodes) -> None:
    (aus_url, _), (_, idn_tok) = two_nodes
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {idn_tok}"}):
        r = httpx.get(aus_url + "/api/v1/inbox", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(aus_url + "/openapi.json").status_code == 200
