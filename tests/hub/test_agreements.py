"""The hub's agreement registry and the relay's refusals by agreement and quota, through
real HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from lintas.hub.models import AgreementUsage, Message
from lintas.node.hub_client import HubClient
from lintas.node.runtime import Node
from lintas.policy import Agreement, Direction, countersign, propose, status_notice
from lintas.protocol import errors as e
from lintas.protocol.envelope import RoutingHeader, seal
from lintas.storage import utcnow
from tests.conftest import HubFixture

TODAY = utcnow().date()


def terms(agreement_id: str = "AUS-IDN-2027-01", daily: int = 100, annual: int = 1000,
          both_ways: bool = False, valid_from: date | None = None,
          valid_until: date | None = None) -> Agreement:
    ask = Direction("AUS", "IDN", ("border_control", "visa_processing"),
                    ("fingerprint_1n", "document"), daily_quota=daily, annual_quota=annual,
                    disclosure=("name", "nationality"))
    back = Direction("IDN", "AUS", ("asylum",), ("document",))
    return Agreement(agreement_id, "Border checks", "AUS", "IDN",
                     valid_from or TODAY - timedelta(days=1),
                     valid_until or TODAY + timedelta(days=365),
                     (ask, back) if both_ways else (ask,))


def signed_by_both(aus: Node, idn: Node, agreement: Agreement) -> str:
    return countersign(propose(agreement, aus.signing_key()), idn.signing_key()).serialize()


def check_request(sender: Node, to: str, agreement: str | None,
                  message_type: str = "check.request") -> str:
    now = utcnow()
    header = RoutingHeader.new(message_type, sender.member, to, now, timedelta(hours=1),
                               agreement=agreement)
    body: dict[str, object]
    check = str(uuid.uuid4())
    if message_type == "check.request":
        body = {"check": check, "purpose": "border_control", "query_type": "document",
                "max_candidates": 1,
                "probe": {"document": {"number": "L898902C3", "issuing_state": "UTO"}}}
    else:
        body = {"check": check, "outcome": "no_hit", "candidates": []}
    enc = sender.directory().members[to].current_encryption_key(now)
    assert enc is not None
    return seal(header, body, sender.signing_key(), enc.public())


def stored(hub: HubFixture) -> int:
    with hub.db.session() as s:
        return s.scalar(select(func.count()).select_from(Message)) or 0


@pytest.fixture
def three(hub: HubFixture, make_node: Callable[..., Node]) -> tuple[Node, Node, Node]:
    return make_node("AUS"), make_node("IDN"), make_node("THA")


def client(hub: HubFixture, node: Node) -> HubClient:
    return hub.client(node)


def refused(hub: HubFixture, node: Node, envelope: str) -> e.ProtocolError:
    before = stored(hub)
    with client(hub, node) as c, pytest.raises(e.ProtocolError) as info:
        c.submit(envelope)
    assert stored(hub) == before  # a refusal leaves nothing stored
    return info.value


def test_register_and_relay_under_agreement(hub: HubFixture, three: tuple[Node, Node, Node]
                                            ) -> None:
    aus, idn, tha = three
    doc = signed_by_both(aus, idn, terms())
    with client(hub, idn) as c:
        view = c.register_agreement(doc)
        assert (view["id"], view["status"], view["state"]) == ("AUS-IDN-2027-01", "active",
                                                               "active")
        assert c.register_agreement(doc)["registered_at"] == view["registered_at"]  # idempotent
    with client(hub, aus) as c:
        assert [a["id"] for a in c.agreements()] == ["AUS-IDN-2027-01"]
        c.submit(check_request(aus, "IDN", "AUS-IDN-2027-01"))
    with client(hub, tha) as c:
        assert c.agreements() == []  # not a party: sees nothing
    # The answer travels back under the same agreement.
    with client(hub, idn) as c:
        c.submit(check_request(idn, "AUS", "AUS-IDN-2027-01", "check.answer"))
    assert stored(hub) == 2


def test_refusals_by_routing_header(hub: HubFixture, three: tuple[Node, Node, Node]) -> None:
    aus, idn, _ = three
    with client(hub, idn) as c:
        c.register_agreement(signed_by_both(aus, idn, terms()))
    err = refused(hub, aus, check_request(aus, "IDN", None))
    assert isinstance(err, e.NoAgreement) and "must name an agreement" in err.message
    err = refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-1999-99"))
    assert isinstance(err, e.NoAgreement) and "not registered between AUS and IDN" in err.message
    # An agreement between AUS and IDN does not cover THA.
    err = refused(hub, aus, check_request(aus, "THA", "AUS-IDN-2027-01"))
    assert isinstance(err, e.NoAgreement)
    # One-way: IDN may not ask AUS.
    err = refused(hub, idn, check_request(idn, "AUS", "AUS-IDN-2027-01"))
    assert isinstance(err, e.NoAgreement) and "does not let IDN ask AUS" in err.message
    # The batch endpoint gives the same typed refusal, per envelope.
    with client(hub, aus) as c:
        outcomes = c.submit_batch([check_request(aus, "IDN", None),
                                   check_request(aus, "IDN", "AUS-IDN-2027-01")])
    assert isinstance(outcomes[0], e.NoAgreement) and outcomes[1] is None


def test_quota_daily_then_nothing_stored(hub: HubFixture, three: tuple[Node, Node, Node]
                                         ) -> None:
    aus, idn, _ = three
    with client(hub, aus) as c:
        c.register_agreement(signed_by_both(aus, idn, terms(daily=2, annual=5)))
        c.submit(check_request(aus, "IDN", "AUS-IDN-2027-01"))
        outcomes = c.submit_batch([check_request(aus, "IDN", "AUS-IDN-2027-01"),
                                   check_request(aus, "IDN", "AUS-IDN-2027-01")])
    assert outcomes[0] is None and isinstance(outcomes[1], e.QuotaExhausted)
    err = refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-2027-01"))
    assert isinstance(err, e.QuotaExhausted) and "daily quota of 2" in err.message
    assert err.status == 429
    with hub.db.session() as s:
        assert s.scalar(select(AgreementUsage.count)) == 2
    # Answers do not count and still pass.
    with client(hub, idn) as c:
        c.submit(check_request(idn, "AUS", "AUS-IDN-2027-01", "check.answer"))


def test_annual_quota_counts_earlier_days(hub: HubFixture, three: tuple[Node, Node, Node]
                                          ) -> None:
    aus, idn, _ = three
    with client(hub, aus) as c:
        c.register_agreement(signed_by_both(aus, idn, terms(daily=5, annual=5)))
    yesterday = TODAY - timedelta(days=1)
    if yesterday.year == TODAY.year:
        with hub.db.session() as s:
            s.add(AgreementUsage(agreement_id="AUS-IDN-2027-01", requester="AUS",
                                 day=yesterday, count=5))
        err = refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-2027-01"))
        assert isinstance(err, e.QuotaExhausted) and "annual quota of 5" in err.message


def test_suspend_resume_terminate(hub: HubFixture, three: tuple[Node, Node, Node]) -> None:
    aus, idn, _ = three
    doc = signed_by_both(aus, idn, terms())
    from lintas.policy import verify

    signed = verify(doc, aus.directory())
    with client(hub, aus) as c:
        c.register_agreement(doc)
        notice = status_notice(signed, "suspended", "data-protection review", "IDN",
                               idn.signing_key())
        # IDN's notice sent by AUS: refused.
        with pytest.raises(e.InvalidAgreement, match="signed by IDN, sent by AUS"):
            c.agreement_status("AUS-IDN-2027-01", notice.document)
    with client(hub, idn) as c:
        view = c.agreement_status("AUS-IDN-2027-01", notice.document)
        assert (view["status"], view["status_reason"]) == ("suspended", "data-protection review")
        with pytest.raises(e.AgreementConflict, match="already suspended"):
            c.agreement_status("AUS-IDN-2027-01", notice.document)
    err = refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-2027-01"))
    assert isinstance(err, e.AgreementInactive)
    assert "is suspended (data-protection review)" in err.message
    # Answers to checks already under way still pass while suspended.
    with client(hub, idn) as c:
        c.submit(check_request(idn, "AUS", "AUS-IDN-2027-01", "check.answer"))
    with client(hub, aus) as c:
        c.agreement_status("AUS-IDN-2027-01", status_notice(
            signed, "active", "", "AUS", aus.signing_key()).document)
        c.submit(check_request(aus, "IDN", "AUS-IDN-2027-01"))
        c.agreement_status("AUS-IDN-2027-01", status_notice(
            signed, "terminated", "replaced by AUS-IDN-2028-01", "AUS",
            aus.signing_key()).document)
        with pytest.raises(e.AgreementConflict, match="terminated"):
            c.agreement_status("AUS-IDN-2027-01", status_notice(
                signed, "active", "", "AUS", aus.signing_key()).document)
    assert isinstance(refused(hub, idn, check_request(idn, "AUS", "AUS-IDN-2027-01",
                                                      "check.answer")), e.AgreementInactive)


def test_validity_dates(hub: HubFixture, three: tuple[Node, Node, Node]) -> None:
    aus, idn, _ = three
    future = terms("AUS-IDN-LATER", valid_from=TODAY + timedelta(days=10),
                   valid_until=TODAY + timedelta(days=20))
    past = terms("AUS-IDN-PAST", valid_from=TODAY - timedelta(days=20),
                 valid_until=TODAY - timedelta(days=10))
    with client(hub, aus) as c:
        assert c.register_agreement(signed_by_both(aus, idn, future))["state"] == "not_yet_valid"
        assert c.register_agreement(signed_by_both(aus, idn, past))["state"] == "expired"
    assert "not_yet_valid" in refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-LATER")).message
    assert "expired" in refused(hub, aus, check_request(aus, "IDN", "AUS-IDN-PAST")).message


def test_registration_refusals(hub: HubFixture, three: tuple[Node, Node, Node]) -> None:
    aus, idn, tha = three
    proposed = propose(terms(), aus.signing_key())
    with client(hub, aus) as c:
        with pytest.raises(e.InvalidAgreement, match="not countersigned by IDN"):
            c.register_agreement(proposed.serialize())
        # Signed by THA's key but claiming to be IDN's signature.
        forged = countersign(proposed, tha.signing_key())
        with pytest.raises(e.InvalidAgreement, match=r"signatures\[1\].protected.kid"):
            c.register_agreement(forged.serialize())
        # Terms changed after signing.
        doc = json.loads(signed_by_both(aus, idn, terms()))
        other = terms(daily=100_000, annual=100_000).canonical()
        import base64

        doc["payload"] = base64.urlsafe_b64encode(other).rstrip(b"=").decode()
        with pytest.raises(e.InvalidAgreement, match="does not verify"):
            c.register_agreement(json.dumps(doc))
        with pytest.raises(e.InvalidAgreement, match="document: is not JSON"):
            c.register_agreement("{not json")
        c.register_agreement(signed_by_both(aus, idn, terms()))
        with pytest.raises(e.AgreementConflict, match="another agreement"):
            c.register_agreement(signed_by_both(aus, idn, terms(daily=3)))
    with client(hub, tha) as c, pytest.raises(e.InvalidAgreement, match="THA is not a party"):
        c.register_agreement(signed_by_both(aus, idn, terms("AUS-IDN-2027-02")))
    # Unsigned callers are refused before anything is read.
    r = httpx.post(hub.url + "/v1/agreements", json={"document": "{}"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(hub.url + "/v1/agreements", json={"documents": "{}"}, timeout=10)
    assert r.status_code in (400, 401)
