"""Envelope sealing and opening as a pure library, without any server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lintas.crypto import generate
from lintas.protocol import errors as e
from lintas.protocol.envelope import (
    RoutingHeader,
    check_times,
    open_payload,
    parse,
    seal,
    verify_signature,
)
from lintas.protocol.members import InvalidMemberCode, member_kind
from lintas.storage import utcnow


def test_seal_then_open() -> None:
    sig, enc = generate("sig"), generate("enc")
    header = RoutingHeader.new("diagnostic.ping", "AUS", "IDN", utcnow())
    env = seal(header, {"text": "selamat pagi"}, sig, enc.public())
    parsed = parse(env)
    assert parsed.header == header and parsed.kid == sig.kid and parsed.alg == "Ed25519"
    verify_signature(parsed, sig.public())
    assert open_payload(parsed, {enc.kid: enc}).body == {"text": "selamat pagi"}
    with pytest.raises(e.BadSignature):
        verify_signature(parsed, generate("sig").public())
    with pytest.raises(e.UndecryptablePayload):
        open_payload(parsed, {generate("enc").kid: generate("enc")})


def test_seal_refuses_unknown_types_and_bad_bodies() -> None:
    sig, enc = generate("sig"), generate("enc")
    with pytest.raises(e.UnknownMessageType):
        seal(RoutingHeader.new("gallery.dump", "AUS", "IDN", utcnow()), {}, sig, enc.public())
    with pytest.raises(e.InvalidBody, match=r"body\.text"):
        seal(RoutingHeader.new("diagnostic.ping", "AUS", "IDN", utcnow()), {"text": 5}, sig,
             enc.public())
    with pytest.raises(e.InvalidBody, match="unexpected"):
        seal(RoutingHeader.new("diagnostic.ping", "AUS", "IDN", utcnow()),
             {"text": "x", "extra": 1}, sig, enc.public())


def test_times() -> None:
    now = utcnow()
    header = RoutingHeader.new("diagnostic.ping", "AUS", "IDN", now)
    check_times(header, now)
    check_times(header, now - timedelta(minutes=4))  # sender's clock 4 min ahead: tolerated
    with pytest.raises(e.NotYetValid):
        check_times(header, now - timedelta(minutes=6))
    with pytest.raises(e.Expired):
        check_times(header, now + timedelta(days=2))
    with pytest.raises(e.LifetimeTooLong):
        check_times(RoutingHeader.new("diagnostic.ping", "AUS", "IDN", now,
                                      lifetime=timedelta(days=8)), now)


@pytest.mark.parametrize("raw", [b"", b"a.b.c", "x" * 10, "é.é.é", b"\xff\xfe"])
def test_parse_never_crashes_on_junk(raw: bytes | str) -> None:
    with pytest.raises(e.ProtocolError):
        parse(raw)


def test_member_codes() -> None:
    assert member_kind("AUS") == "state" and member_kind("UNHCR") == "organisation"
    assert member_kind("IOM") == "organisation"
    for bad in ("aus", "A", "TOO-LONG-CODE", "", "AU S"):
        with pytest.raises(InvalidMemberCode):
            member_kind(bad)
