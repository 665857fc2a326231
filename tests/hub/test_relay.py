"""The relay through a real hub server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import select

from lintas.hub.models import Message
from lintas.node.runtime import Node
from lintas.storage import utcnow
from tests.conftest import HubFixture


def message_rows(hub: HubFixture) -> list[Message]:
    with hub.db.session() as s:
        return list(s.scalars(select(Message)))


def inbox_of(node: Node) -> list[tuple[str, str, dict[str, str]]]:
    return [(m.sender, m.type, json.loads(m.body)) for m in node.inbox()]


def test_ping_and_pong_travel_both_ways(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    ping = aus.enqueue("diagnostic.ping", "IDN", {"text": "hello Jakarta"})
    with hub.client(aus) as ca, hub.client(idn) as ci:
        assert aus.send_due(ca) == 1
        assert idn.poll(ci, wait=2) == 1
        assert inbox_of(idn) == [("AUS", "diagnostic.ping", {"text": "hello Jakarta"})]
        assert idn.send_due(ci) == 1  # the automatic pong
        assert aus.poll(ca, wait=2) == 1
    (pong,) = aus.inbox()
    assert pong.type == "diagnostic.pong" and pong.in_reply_to == ping
    assert "hello Jakarta" in json.loads(pong.body)["text"]
    assert [m.status for m in aus.outbox()] == ["sent"]


def test_hub_stores_only_ciphertext_and_drops_it_on_ack(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    aus.enqueue("diagnostic.ping", "IDN", {"text": "CANARY-relay-0042"})
    with hub.client(aus) as ca, hub.client(idn) as ci:
        aus.send_due(ca)
        (row,) = message_rows(hub)
        assert row.envelope is not None and "CANARY" not in row.envelope
        assert (row.sender, row.recipient, row.type) == ("AUS", "IDN", "diagnostic.ping")
        idn.poll(ci, wait=2)
    (row,) = message_rows(hub)
    assert row.envelope is None and row.acked_at is not None and row.delivery_count == 1


def test_long_poll_returns_as_soon_as_an_envelope_arrives(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    import threading
    import time

    aus, idn = make_node("AUS"), make_node("IDN")
    got: list[float] = []

    def poll() -> None:
        with hub.client(idn) as ci:
            t0 = time.monotonic()
            idn.poll(ci, wait=10)
            got.append(time.monotonic() - t0)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    aus.enqueue("diagnostic.ping", "IDN", {"text": "wake up"})
    with hub.client(aus) as ca:
        aus.send_due(ca)
    t.join(timeout=15)
    assert got and got[0] < 5, "the long poll should end on arrival, not at its 10 s limit"
    assert len(idn.inbox()) == 1


def test_unacknowledged_envelope_is_offered_again_after_the_lease(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    aus.enqueue("diagnostic.ping", "IDN", {"text": "x"})
    with hub.client(aus) as ca:
        aus.send_due(ca)
    first = hub.relay.lease("IDN", 10)
    assert len(first) == 1
    assert hub.relay.lease("IDN", 10) == [], "a leased envelope is not handed to a second poller"
    later = hub.relay.lease("IDN", 10, now=utcnow() + timedelta(seconds=31))
    assert [d.id for d in later] == [first[0].id]
    # The node handles it once even when it is delivered twice.
    assert idn.receive(first[0].envelope) is True
    assert idn.receive(later[0].envelope) is False
    assert len(idn.inbox()) == 1


def test_purge_removes_expired_envelopes(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    aus, _ = make_node("AUS"), make_node("IDN")
    aus.enqueue("diagnostic.ping", "IDN", {"text": "short-lived"}, lifetime=timedelta(minutes=1))
    with hub.client(aus) as ca:
        aus.send_due(ca)
    assert hub.relay.purge() == 0
    assert hub.relay.purge(now=utcnow() + timedelta(minutes=7)) == 1
    assert message_rows(hub) == []


def test_mailbox_requires_a_valid_member_token(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    r = httpx.get(hub.url + "/v1/mailbox", params={"wait": 0})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    # A token made for the ack path cannot read the mailbox.
    from lintas.protocol.auth import make_token

    token = make_token("IDN", idn.signing_key(), "POST", "/v1/mailbox/ack", utcnow())
    r = httpx.get(hub.url + "/v1/mailbox", params={"wait": 0},
                  headers={"Authorization": f"Lintas {token}"})
    assert r.status_code == 401
    # AUS signing a token that claims to be IDN is refused.
    token = make_token("IDN", aus.signing_key(), "GET", "/v1/mailbox", utcnow())
    r = httpx.get(hub.url + "/v1/mailbox", params={"wait": 0},
                  headers={"Authorization": f"Lintas {token}"})
    assert r.status_code == 401
    # Acknowledging another member's message changes nothing.
    aus.enqueue("diagnostic.ping", "IDN", {"text": "x"})
    with hub.client(aus) as ca:
        aus.send_due(ca)
        (row,) = message_rows(hub)
        assert ca.ack([row.id]) == 0
    assert message_rows(hub)[0].envelope is not None


def test_directory_is_signed_and_lists_members(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    from lintas.protocol.directory import verify_directory

    aus = make_node("AUS")
    with hub.client() as c:
        directory = verify_directory(c.directory(), hub.key.public())
    member = directory.members["AUS"]
    assert member.active and {k.use for k in member.keys} == {"sig", "enc"}
    assert member.key(aus.signing_key().kid, "sig", utcnow()) is not None


def test_ack_token_is_bound_to_its_body(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    from lintas.protocol.auth import make_token

    aus, idn = make_node("AUS"), make_node("IDN")
    aus.enqueue("diagnostic.ping", "IDN", {"text": "x"})
    with hub.client(aus) as ca:
        aus.send_due(ca)
    (row,) = message_rows(hub)
    signed_for = json.dumps({"ids": ["00000000-0000-4000-8000-000000000000"]}).encode()
    token = make_token("IDN", idn.signing_key(), "POST", "/v1/mailbox/ack", utcnow(), signed_for)
    r = httpx.post(hub.url + "/v1/mailbox/ack", content=json.dumps({"ids": [row.id]}),
                   headers={"Authorization": f"Lintas {token}",
                            "Content-Type": "application/json"})
    assert r.status_code == 401 and "another request" in r.json()["error"]["message"]
    assert message_rows(hub)[0].envelope is not None


def test_suspended_member_cannot_poll(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    import pytest

    from lintas.hub import registry
    from lintas.protocol import errors as e

    idn = make_node("IDN")
    registry.set_status(hub.db, "IDN", "suspended", "test")
    with hub.client(idn) as ci, pytest.raises(e.Unauthorized, match="suspended"):
        ci.mailbox(wait=0)


def test_mailbox_answer_keeps_to_its_byte_budget(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, _idn = make_node("AUS"), make_node("IDN")
    for i in range(5):
        aus.enqueue("diagnostic.ping", "IDN", {"text": f"{i}" * 2000})
    with hub.client(aus) as ca:
        aus.send_due(ca)
    size = message_rows(hub)[0].size
    first = hub.relay.lease("IDN", 100, max_bytes=2 * size + 10)
    assert len(first) == 2
    rest = hub.relay.lease("IDN", 100)
    assert len(rest) == 3, "envelopes beyond the budget are offered to the next poll at once"
    assert sorted(r.delivery_count for r in message_rows(hub)) == [1] * 5
    assert len(hub.relay.lease("IDN", 100, max_bytes=1)) == 0  # all leased now
