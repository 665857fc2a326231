"""The node's inbox, binding checks, directory pinning and key rotation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from lintas.crypto import generate
from lintas.hub import registry
from lintas.node.models import RejectedEnvelope
from lintas.node.runtime import Node, NodeError, init_node, rotate_node_keys
from lintas.protocol import errors as e
from lintas.protocol.directory import Directory, sign_directory
from lintas.protocol.envelope import RoutingHeader, seal
from lintas.protocol.keyfile import parse_member_keys
from lintas.storage import utcnow
from tests.conftest import PASSPHRASE, HubFixture, refresh_all


def rejected(node: Node) -> list[RejectedEnvelope]:
    with node.db.session() as s:
        return list(s.scalars(select(RejectedEnvelope)))


def sealed(sender: Node, to: str, text: str = "x", when=None) -> str:
    now = when or utcnow()
    header = RoutingHeader.new("diagnostic.ping", sender.member, to, now)
    enc = sender.directory().members[to].current_encryption_key(utcnow())
    assert enc is not None
    return seal(header, {"text": text}, sender.signing_key(), enc.public())


def test_each_message_is_handled_once(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    env = sealed(aus, "IDN", "once")
    assert idn.receive(env) is True
    assert idn.receive(env) is False
    assert len(idn.inbox()) == 1
    pongs = [m for m in idn.outbox() if m.type == "diagnostic.pong"]
    assert len(pongs) == 1, "a duplicate delivery must not trigger a second reply"


def test_payload_lifted_into_another_envelope_is_rejected(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn, tha = make_node("AUS"), make_node("IDN"), make_node("THA")
    # THA writes to IDN; AUS (a member, but malicious) copies THA's encrypted payload
    # into an envelope of its own, correctly signed by AUS.
    from joserfc import jws

    from tests.hub.test_refusals import unb64

    original = sealed(tha, "IDN", "for IDN only")
    routing = unb64(original.split(".")[1])
    mine = unb64(sealed(aus, "IDN").split(".")[1])
    forged = jws.serialize_compact(
        {"alg": "Ed25519", "kid": aus.signing_key().kid, "typ": "lintas-envelope+jws"},
        json.dumps({**mine, "payload": routing["payload"]}).encode(),
        aus.signing_key().private, algorithms=["Ed25519"])
    assert idn.receive(forged) is False
    assert idn.inbox() == []
    (r,) = rejected(idn)
    assert r.code == "payload_mismatch" and r.claimed_sender == "AUS"
    assert "for IDN only" not in r.reason


def test_envelope_for_someone_else_is_rejected(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn, tha = make_node("AUS"), make_node("IDN"), make_node("THA")
    assert tha.receive(sealed(aus, "IDN")) is False
    assert rejected(tha)[0].code == "payload_mismatch"
    assert idn.inbox() == [] and tha.inbox() == []


def test_directory_must_carry_the_pinned_hub_signature(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus = make_node("AUS")
    impostor = generate("sig")
    fake = sign_directory(Directory(issued_at=utcnow(), members={}), impostor)

    class FakeHub:
        def directory(self) -> str:
            return fake

    with pytest.raises(e.DirectoryError, match="pinned hub key"):
        aus.refresh_directory(FakeHub())  # type: ignore[arg-type]
    assert "AUS" in aus.directory().members, "the held directory is kept"


def test_older_directory_is_not_accepted(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    aus = make_node("AUS")
    old = sign_directory(Directory(issued_at=utcnow() - timedelta(days=1), members={}), hub.key)

    class StaleHub:
        def directory(self) -> str:
            return old

    with pytest.raises(e.DirectoryError, match="older"):
        aus.refresh_directory(StaleHub())  # type: ignore[arg-type]


def test_unknown_recipient_is_refused_before_anything_is_queued(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus = make_node("AUS")
    with pytest.raises(e.UnknownRecipient):
        aus.enqueue("diagnostic.ping", "NZL", {"text": "x"})
    assert aus.outbox() == []


def test_key_rotation_keeps_in_flight_messages_deliverable(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    old_sig = aus.signing_key().kid
    # In flight: signed with AUS's old key and encrypted to IDN's old key.
    aus.enqueue("diagnostic.ping", "IDN", {"text": "before rotation"})
    for node in (aus, idn):
        doc = rotate_node_keys(node.db, PASSPHRASE)
        registry.rotate_keys(hub.db, parse_member_keys(doc), overlap=timedelta(hours=1))
    aus2, idn2 = Node(aus.db, PASSPHRASE), Node(idn.db, PASSPHRASE)  # restarted nodes
    hub.nodes.update(AUS=aus2, IDN=idn2)
    refresh_all(hub)
    assert aus2.signing_key().kid != old_sig
    with hub.client(aus2) as ca, hub.client(idn2) as ci:
        assert aus2.send_due(ca) == 1  # old signature, still within the overlap
        aus2.enqueue("diagnostic.ping", "IDN", {"text": "after rotation"})
        assert aus2.send_due(ca) == 1
        assert idn2.poll(ci, wait=2) == 2
    texts = sorted(json.loads(m.body)["text"] for m in idn2.inbox())
    assert texts == ["after rotation", "before rotation"]


def test_old_key_is_refused_after_the_overlap(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, _idn = make_node("AUS"), make_node("IDN")
    aus.enqueue("diagnostic.ping", "IDN", {"text": "too late"})
    registry.rotate_keys(hub.db, parse_member_keys(rotate_node_keys(aus.db, PASSPHRASE)),
                         overlap=timedelta(0))
    with hub.client(aus) as ca:
        assert aus.send_due(ca) == 0
    (msg,) = aus.outbox()
    assert msg.status == "failed" and msg.last_error.startswith("unknown_key")


def test_wrong_passphrase_cannot_start_a_node(hub: HubFixture,
                                              make_node: Callable[..., Node]) -> None:
    from lintas.crypto import KeyMaterialError

    aus = make_node("AUS")
    with pytest.raises(KeyMaterialError, match="passphrase"):
        Node(aus.db, "not the passphrase at all")


def test_init_refuses_to_replace_keys(hub: HubFixture, make_node: Callable[..., Node]) -> None:
    aus = make_node("AUS")
    with pytest.raises(NodeError, match="already initialised"):
        init_node(aus.db, "AUS", hub.url, hub.key.public_jwk(), PASSPHRASE)


def test_private_keys_are_not_stored_in_clear(hub: HubFixture,
                                              make_node: Callable[..., Node]) -> None:
    from lintas.node.models import NodeKey

    aus = make_node("AUS")
    with aus.db.session() as s:
        rows = list(s.scalars(select(NodeKey)))
    secrets = {json.dumps(k.private.as_dict(private=True)["d"]).strip('"') for k in aus.keys}
    for row in rows:
        assert row.private_sealed.count(".") == 4  # a JWE
        assert not any(d in row.private_sealed or d in row.public_jwk for d in secrets)


def test_running_node_picks_up_its_rotated_keys_without_a_restart(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    doc = rotate_node_keys(idn.db, PASSPHRASE)  # as `lintas node rotate-key` would, aside
    registry.rotate_keys(hub.db, parse_member_keys(doc), overlap=timedelta(hours=1))
    refresh_all(hub)  # IDN (still running, same object) sees its new keys listed
    new_enc = doc["keys"][1]["kid"]
    assert aus.directory().members["IDN"].current_encryption_key(utcnow()).kid == new_enc
    assert idn.signing_key().kid == doc["keys"][0]["kid"]
    assert idn.receive(sealed(aus, "IDN", "to the new key")) is True


def test_expired_envelope_is_rejected_by_the_node_too(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    late = sealed(aus, "IDN", when=utcnow() - timedelta(days=2))  # expired a day ago
    assert idn.receive(late) is False
    assert rejected(idn)[0].code == "expired"


def test_a_ping_is_kept_even_if_its_pong_cannot_be_sealed(
    hub: HubFixture, make_node: Callable[..., Node]
) -> None:
    aus, idn = make_node("AUS"), make_node("IDN")
    env = sealed(aus, "IDN", "keep me")
    registry.set_status(hub.db, "AUS", "suspended", "test")
    refresh_all(hub)
    # IDN's directory now says AUS is suspended: the envelope (sent before) is refused...
    assert idn.receive(env) is False
    registry.set_status(hub.db, "AUS", "active", None)
    refresh_all(hub)
    # ...but when only the reply is impossible (no valid encryption key for AUS), the ping
    # itself is kept.
    members = dict(idn.directory().members)
    aus_entry = members["AUS"]
    members["AUS"] = type(aus_entry)(aus_entry.code, aus_entry.name, aus_entry.kind,
                                     aus_entry.status,
                                     tuple(k for k in aus_entry.keys if k.use == "sig"))
    idn._directory = Directory(issued_at=idn.directory().issued_at, members=members)
    assert idn.receive(env) is True
    assert [m.type for m in idn.outbox()] == []
