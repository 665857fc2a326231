"""Every refusal named in the protocol: clear typed error, nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from lintas.crypto import generate
from lintas.hub import registry
from lintas.hub.models import HubKey, Member, MemberKey, Message
from lintas.node.runtime import Node
from lintas.protocol.envelope import RoutingHeader, seal
from lintas.storage import utcnow
from tests.conftest import HubFixture


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def unb64(seg: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def snapshot(hub: HubFixture) -> tuple[int, ...]:
    with hub.db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) or 0
                     for t in (Message, Member, MemberKey, HubKey))


def envelope(aus: Node, to: str = "IDN", **overrides: object) -> str:
    """A correctly sealed AUS envelope, with routing-header fields overridden as asked."""
    now = utcnow()
    header = RoutingHeader.new("diagnostic.ping", "AUS", to, now)
    fields = {"created": now, "expires": now + timedelta(hours=1)}
    fields.update({k: v for k, v in overrides.items() if k in ("created", "expires")})
    header = RoutingHeader(header.id, header.type, header.sender, header.recipient,
                           fields["created"].replace(microsecond=0),  # type: ignore[union-attr]
                           fields["expires"].replace(microsecond=0),  # type: ignore[union-attr]
                           None, None)
    peer = aus.directory().members.get(to) or aus.directory().members["IDN"]
    enc = peer.current_encryption_key(now)
    assert enc is not None
    return seal(header, {"text": "x"}, aus.signing_key(), enc.public())


def post(hub: HubFixture, body: bytes | str) -> httpx.Response:
    return httpx.post(hub.url + "/v1/envelopes", content=body,
                      headers={"Content-Type": "application/jose"}, timeout=10)


@pytest.fixture
def aus_idn(hub: HubFixture, make_node: Callable[..., Node]) -> tuple[Node, Node]:
    return make_node("AUS"), make_node("IDN")


def resign(token: str, header: dict | None = None, routing: dict | None = None,
           key=None) -> str:
    """Rebuild a JWS with a changed header/routing, signed by `key` (or keeping the old
    signature when key is None, which must then fail to verify)."""
    from joserfc import jws

    h, p, sig = token.split(".")
    hdr = header if header is not None else unb64(h)
    rt = routing if routing is not None else unb64(p)
    if key is None:
        return f"{b64(hdr)}.{b64(rt)}.{sig}"
    return jws.serialize_compact(hdr, json.dumps(rt).encode(), key.private,
                                 algorithms=[hdr["alg"]])


CASES: dict[str, tuple[int, str]] = {
    "garbage": (400, "malformed_envelope"),
    "two_parts": (400, "malformed_envelope"),
    "not_json": (400, "malformed_envelope"),
    "bad_id": (400, "malformed_envelope"),
    "unknown_field": (400, "malformed_envelope"),
    "version_not_int": (400, "malformed_envelope"),
    "alg_hs256": (400, "unsupported_algorithm"),
    "alg_none": (400, "unsupported_algorithm"),
    "unknown_sender": (403, "unknown_sender"),
    "suspended_sender": (403, "sender_suspended"),
    "unknown_recipient": (422, "unknown_recipient"),
    "suspended_recipient": (422, "recipient_suspended"),
    "bad_signature": (403, "bad_signature"),
    "moved_payload": (403, "bad_signature"),
    "unregistered_key": (403, "unknown_key"),
    "own_key_other_sender": (403, "unknown_key"),
    "expired": (422, "expired"),
    "from_the_future": (422, "not_yet_valid"),
    "lifetime_too_long": (422, "lifetime_too_long"),
    "oversize": (413, "envelope_too_large"),
    "unknown_type": (422, "unknown_message_type"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_envelope_leaves_nothing_stored(
    case: str, hub: HubFixture, aus_idn: tuple[Node, Node]
) -> None:
    aus, _ = aus_idn
    now = utcnow()
    good = envelope(aus)
    h, p, _sig = good.split(".")
    routing = unb64(p)
    body: bytes | str
    if case == "garbage":
        body = b"\x00\xffnot an envelope"
    elif case == "two_parts":
        body = f"{h}.{p}"
    elif case == "not_json":
        body = f"{h}.{base64.urlsafe_b64encode(b'{{{').decode().rstrip('=')}.{_sig}"
    elif case == "bad_id":
        body = resign(good, routing={**routing, "id": "1; DROP TABLE messages"},
                      key=aus.signing_key())
    elif case == "unknown_field":
        body = resign(good, routing={**routing, "note": "x"}, key=aus.signing_key())
    elif case == "version_not_int":
        body = resign(good, routing={**routing, "v": True}, key=aus.signing_key())
    elif case == "alg_hs256":
        body = f"{b64({**unb64(h), 'alg': 'HS256'})}.{p}.{_sig}"
    elif case == "alg_none":
        body = f"{b64({**unb64(h), 'alg': 'none'})}.{p}."
    elif case == "unknown_sender":
        stranger = generate("sig")
        body = resign(good, header={**unb64(h), "kid": stranger.kid},
                      routing={**routing, "from": "NZL"}, key=stranger)
    elif case == "suspended_sender":
        registry.set_status(hub.db, "AUS", "suspended", "test")
        body = good
    elif case == "unknown_recipient":
        body = resign(good, routing={**routing, "to": "NZL"}, key=aus.signing_key())
    elif case == "suspended_recipient":
        registry.set_status(hub.db, "IDN", "suspended", "test")
        body = good
    elif case == "bad_signature":
        body = resign(good, routing={**routing, "type": "diagnostic.pong"})
    elif case == "moved_payload":
        # The payload of another AUS envelope pasted in: the signature no longer holds.
        other = envelope(aus)
        body = resign(good, routing={**routing, "payload": unb64(other.split(".")[1])["payload"]})
    elif case == "unregistered_key":
        rogue = generate("sig")
        body = resign(good, header={**unb64(h), "kid": rogue.kid}, key=rogue)
    elif case == "own_key_other_sender":
        # AUS signs with its own registered key but names IDN as the sender.
        body = resign(good, routing={**routing, "from": "IDN", "to": "AUS"},
                      key=aus.signing_key())
    elif case == "expired":
        body = envelope(aus, created=now - timedelta(hours=2), expires=now - timedelta(hours=1))
    elif case == "from_the_future":
        body = envelope(aus, created=now + timedelta(hours=1), expires=now + timedelta(hours=2))
    elif case == "lifetime_too_long":
        body = envelope(aus, expires=now + timedelta(days=30))
    elif case == "oversize":
        body = "A" * (64 * 1024 + 1)
    elif case == "unknown_type":
        body = resign(good, routing={**routing, "type": "gallery.dump"}, key=aus.signing_key())
    before = snapshot(hub)
    r = post(hub, body)
    status, code = CASES[case]
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.json()["error"]["message"]
    assert snapshot(hub) == before


def test_replayed_envelope_is_refused_and_stored_once(
    hub: HubFixture, aus_idn: tuple[Node, Node]
) -> None:
    aus, _ = aus_idn
    good = envelope(aus)
    assert post(hub, good).status_code == 202
    before = snapshot(hub)
    r = post(hub, good)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "duplicate_message")
    assert snapshot(hub) == before


def test_legacy_eddsa_alg_is_accepted(hub: HubFixture, aus_idn: tuple[Node, Node]) -> None:
    aus, _ = aus_idn
    good = envelope(aus)
    h = unb64(good.split(".")[0])
    legacy = resign(good, header={**h, "alg": "EdDSA"}, key=aus.signing_key())
    assert post(hub, legacy).status_code == 202


def test_bad_query_parameters_name_the_field(hub: HubFixture) -> None:
    r = httpx.get(hub.url + "/v1/mailbox", params={"wait": "soon"})
    assert r.status_code == 400
    assert "wait" in r.json()["error"]["message"]
