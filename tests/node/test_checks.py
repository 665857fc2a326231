"""Agreements negotiated between nodes and identity checks under them, end to end through
a real hub over HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from lintas.biometrics.extraction import extract_template
from lintas.biometrics.images import from_array, load_image
from lintas.biometrics.minutiae import MinutiaeTemplate
from lintas.node.agreements import Agreements
from lintas.node.checks import CheckError, Checks
from lintas.node.documents import DocumentRegister
from lintas.node.gallery import Gallery
from lintas.node.models import CheckProbe, InboxMessage, OutboxMessage
from lintas.node.runtime import Node
from lintas.node.users import NotPermitted, Principal
from lintas.policy import Agreement, Direction
from lintas.protocol import errors as e
from lintas.storage import utcnow
from tests.conftest import HubFixture

OFFICER = Principal("olivia", "officer")
SUPERVISOR = Principal("sam", "supervisor")
ADMIN = Principal("ada", "admin")
TD3 = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
       "L898902C36UTO7408122F1204159ZE184226B<<<<<10")


@dataclasses.dataclass
class Member:
    node: Node
    agreements: Agreements
    checks: Checks
    gallery: Gallery
    register: DocumentRegister


def member(node: Node) -> Member:
    gallery, register = Gallery(node.db), DocumentRegister(node.db)
    agreements = Agreements(node)
    return Member(node, agreements, Checks(node, agreements, gallery, register), gallery,
                  register)


def pump(hub: HubFixture, *members: Member, rounds: int = 4) -> None:
    """Let the nodes exchange what they have queued, as their loops would."""
    for _ in range(rounds):
        for m in members:
            with hub.client(m.node) as c:
                m.node.send_due(c)
                m.checks.process()
                m.node.send_due(c)
        for m in members:
            with hub.client(m.node) as c:
                m.node.poll(c, wait=0)
                m.checks.process()


def terms(mode: str = "automatic", daily: int = 50, agreement_id: str = "AUS-IDN-2027-01",
          false_hits_per_million: int = 1000) -> Agreement:
    today = utcnow().date()
    return Agreement(agreement_id, "Border checks", "AUS", "IDN", today - timedelta(days=1),
                     today + timedelta(days=365), (Direction(
                         "AUS", "IDN", ("border_control", "asylum"),
                         ("fingerprint_1n", "fingerprint_1to1", "document"), mode, 3, daily,
                         daily * 10, ("name", "nationality", "date_of_birth"), 30,
                         false_hits_per_million),))


def agree(hub: HubFixture, aus: Member, idn: Member, agreement: Agreement) -> None:
    aus.agreements.propose(ADMIN, agreement)
    pump(hub, aus, idn, rounds=1)
    assert idn.agreements.get(agreement.id).status == "received"  # type: ignore[union-attr]
    with hub.client(idn.node) as c:
        idn.agreements.countersign(ADMIN, agreement.id, c)
    pump(hub, aus, idn, rounds=1)
    assert aus.agreements.get(agreement.id).status == "active"  # type: ignore[union-attr]


def image(fvc2004: Path, person: str, impression: int):  # type: ignore[no-untyped-def]
    return load_image((fvc2004 / "DB3_B" / f"{person}_{impression}.tif").read_bytes(), ppi=512)


@pytest.fixture
def pair(hub: HubFixture, make_node: Callable[..., Node]) -> tuple[Member, Member]:
    return member(make_node("AUS")), member(make_node("IDN"))


@pytest.fixture
def enrolled(pair: tuple[Member, Member], fvc2004: Path) -> tuple[Member, Member]:
    _, idn = pair
    for person in ("101", "102", "103"):
        assert idn.gallery.enrol(person, [(2, image(fvc2004, person, 1))]).enrolled
    idn.checks.set_person_data(ADMIN, "101", {"name": "ANNA ERIKSSON", "nationality": "UTO",
                                              "date_of_birth": "1974-08-12"})
    return pair


def test_agreement_negotiation_and_status(hub: HubFixture, pair: tuple[Member, Member]) -> None:
    aus, idn = pair
    with pytest.raises(NotPermitted):
        aus.agreements.propose(OFFICER, terms())
    agree(hub, aus, idn, terms())
    assert idn.agreements.get("AUS-IDN-2027-01").status == "active"  # type: ignore[union-attr]
    with hub.client(aus.node) as c:
        assert [a["id"] for a in c.agreements()] == ["AUS-IDN-2027-01"]
    # A declined proposal.
    aus.agreements.propose(ADMIN, terms(agreement_id="AUS-IDN-2027-02"))
    pump(hub, aus, idn, rounds=1)
    idn.agreements.decline(ADMIN, "AUS-IDN-2027-02", "quotas too high")
    pump(hub, aus, idn, rounds=1)
    declined = aus.agreements.get("AUS-IDN-2027-02")
    assert declined is not None and (declined.status, declined.status_reason) == (
        "declined", "quotas too high")
    # IDN suspends: the hub and AUS follow.
    with hub.client(idn.node) as c:
        idn.agreements.change_status(ADMIN, "AUS-IDN-2027-01", "suspended", "review", c)
    pump(hub, aus, idn, rounds=1)
    assert aus.agreements.get("AUS-IDN-2027-01").status == "suspended"  # type: ignore[union-attr]
    with pytest.raises(e.AgreementInactive, match="suspended"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control", "document",
                          document={"mrz": TD3})
    for m in (aus, idn):
        assert m.node.audit.verify().intact


def test_hit_partial_disclosure_retention_and_probe_destroyed(
        hub: HubFixture, enrolled: tuple[Member, Member], fvc2004: Path, backend: str) -> None:
    aus, idn = enrolled
    agree(hub, aus, idn, terms())
    check = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                              "fingerprint_1n", fingers=[(2, image(fvc2004, "101", 3))])
    assert check.state == "submitted"
    pump(hub, aus, idn)
    answered = aus.checks.get(check.id)
    assert answered is not None and (answered.state, answered.outcome) == ("hit", "hit")
    assert answered.candidates[0]["candidate"] == "c1" and "reference" not in answered.candidates[0]
    responder = idn.checks.get(check.id)
    assert responder is not None and responder.state == "answered_hit"
    assert responder.candidates[0]["reference"] == "101"
    # The probe is gone from the responder: no row, and the inbox kept only its digest.
    with idn.node.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CheckProbe)) == 0
        kept = json.loads(s.scalar(select(InboxMessage.body)
                                   .where(InboxMessage.type == "check.request")) or "{}")
    assert kept["probe"] == {"sha256": responder.probe_sha256}
    # Step 2: name and nationality asked, name approved only.
    with pytest.raises(CheckError, match="categories: sex may not be disclosed"):
        aus.checks.request_disclosure(OFFICER, check.id, "c1", ["sex"], "identity")
    aus.checks.request_disclosure(OFFICER, check.id, "c1", ["name", "nationality"],
                                  "asylum claim under examination")
    pump(hub, aus, idn)
    assert idn.checks.get(check.id).state == "disclosure_pending"  # type: ignore[union-attr]
    with pytest.raises(NotPermitted):
        idn.checks.decide(OFFICER, check.id, ["name"])
    idn.checks.decide(SUPERVISOR, check.id, ["name"])
    pump(hub, aus, idn)
    got = aus.checks.get(check.id)
    assert got is not None and (got.state, got.decision) == ("disclosed", "partial")
    assert got.disclosed == {"name": "ANNA ERIKSSON"}
    assert got.retain_until is not None
    # Retention: purged once the agreed 30 days are over, and audited.
    assert aus.checks.purge_retention(utcnow() + timedelta(days=29)) == 0
    assert aus.checks.purge_retention(utcnow() + timedelta(days=31)) == 1
    purged = aus.checks.get(check.id)
    assert purged is not None and purged.state == "purged" and purged.disclosed is None
    actions = [x.action for x in aus.node.audit.entries()]
    assert "check.purge" in actions and "check.submit" in actions
    for m in (aus, idn):
        assert m.node.audit.verify().intact
        # The audit never holds biometric data: only the probe's digest.
        assert all("data" not in json.dumps(x.details) for x in m.node.audit.entries())


def test_each_agreement_sets_the_rate_at_which_a_candidate_is_a_hit(
        hub: HubFixture, enrolled: tuple[Member, Member], fvc2004: Path) -> None:
    """Among IDN's three persons, 101's impression 7 matches at a search rate (FPIR) of
    about 3·10⁻⁵ and impression 8 at about 6·10⁻³. The node's rule (1000 false hits per
    million searches) reports the first only; an agreement at 10 per million neither,
    one at 10,000 both."""
    aus, idn = enrolled
    rates = {"AUS-IDN-2027-01": 1000, "AUS-IDN-2027-02": 10, "AUS-IDN-2027-03": 10_000}
    for agreement_id, hits in rates.items():
        agree(hub, aus, idn, terms(agreement_id=agreement_id, false_hits_per_million=hits))
    submitted = {(agreement_id, impression): aus.checks.submit(
        OFFICER, "IDN", agreement_id, "border_control", "fingerprint_1n",
        fingers=[(2, image(fvc2004, "101", impression))]).id
        for agreement_id in rates for impression in (7, 8)}
    pump(hub, aus, idn)
    outcomes = {}
    for (agreement_id, impression), check_id in submitted.items():
        got = aus.checks.get(check_id)
        assert got is not None
        outcomes[agreement_id, impression] = got.outcome
        assert got.hit_fpir == rates[agreement_id] / 1e6  # the officer sees the rate
        responder = idn.checks.get(check_id)
        assert responder is not None and responder.hit_fpir == got.hit_fpir
        for candidate in got.candidates:
            assert candidate["fpir"] <= rates[agreement_id] / 1e6
    assert outcomes == {("AUS-IDN-2027-01", 7): "hit", ("AUS-IDN-2027-01", 8): "no_hit",
                        ("AUS-IDN-2027-02", 7): "no_hit", ("AUS-IDN-2027-02", 8): "no_hit",
                        ("AUS-IDN-2027-03", 7): "hit", ("AUS-IDN-2027-03", 8): "hit"}


def test_probe_bytes_leave_the_responders_files(
        hub: HubFixture, enrolled: tuple[Member, Member], fvc2004: Path, backend: str,
        tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the node's own database files are those of the embedded SQLite store")
    aus, idn = enrolled
    agree(hub, aus, idn, terms(mode="review"))
    template = extract_template(image(fvc2004, "102", 3))
    check = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "asylum", "fingerprint_1n",
                              fingers=[(2, template)])
    pump(hub, aus, idn)
    assert idn.checks.get(check.id).state == "awaiting_review"  # type: ignore[union-attr]
    with idn.node.db.session() as s:
        stored = json.loads(s.scalar(select(CheckProbe.probe)) or "{}")
    record = base64.b64decode(stored["fingers"][0]["data"])
    # The minutiae part of the ISO record (past its headers), raw and as sent in base64.
    needles = [record[40:], stored["fingers"][0]["data"][60:].encode()]
    db_file = Path(idn.node.db.url.split("///", 1)[1])

    def idn_files() -> list[Path]:
        """The responder's database, its write-ahead log and anything else of its."""
        return [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(db_file.name)]

    def holding() -> list[str]:
        return [p.name for p in idn_files() for n in needles if n in p.read_bytes()]

    assert holding()  # the probe is there while it waits for review
    idn.checks.release(SUPERVISOR, check.id)
    assert idn.checks.get(check.id).state == "answered_hit"  # type: ignore[union-attr]
    assert idn_files() and holding() == []


def test_protected_record_answers_exactly_as_no_hit(
        hub: HubFixture, enrolled: tuple[Member, Member], fvc2004: Path) -> None:
    aus, idn = enrolled
    agree(hub, aus, idn, terms())
    idn.checks.protect(ADMIN, "101", "refugee", states=["AUS"], reason="recognised refugee")
    protected = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                                  "fingerprint_1n", fingers=[(2, image(fvc2004, "101", 3))])
    unknown = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                                "fingerprint_1n", fingers=[(2, image(fvc2004, "105", 3))])
    pump(hub, aus, idn)
    with aus.node.db.session() as s:
        answers = {json.loads(b)["check"]: json.loads(b) for b in s.scalars(
            select(InboxMessage.body).where(InboxMessage.type == "check.answer"))}
    a, b = answers[protected.id], answers[unknown.id]
    assert a["outcome"] == b["outcome"] == "no_hit"
    assert {k: v for k, v in a.items() if k != "check"} == \
        {k: v for k, v in b.items() if k != "check"}
    assert len(json.dumps(a)) == len(json.dumps(b))
    got = aus.checks.get(protected.id)
    assert got is not None and got.state == "no_hit" and got.candidates == []
    # The responder's own audit records that a protection withheld a candidate.
    matched = [x for x in idn.node.audit.entries() if x.action == "check.match"]
    assert sorted(x.details["withheld"] for x in matched) == [0, 1]


def test_document_check_by_mrz_and_number(hub: HubFixture, pair: tuple[Member, Member]) -> None:
    aus, idn = pair
    agree(hub, aus, idn, terms())
    idn.register.report("L898902C3", "UTO", "P", "stolen", ADMIN)
    hit = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control", "document",
                            document={"mrz": TD3})
    miss = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control", "document",
                             document={"number": "X1234567", "issuing_state": "UTO"})
    pump(hub, aus, idn)
    assert aus.checks.get(hit.id).outcome == "hit"  # type: ignore[union-attr]
    assert aus.checks.get(miss.id).outcome == "no_hit"  # type: ignore[union-attr]
    assert aus.checks.get(hit.id).hit_fpir is None  # type: ignore[union-attr]  # no score
    bad = TD3[:-1] + "9"
    with pytest.raises(CheckError, match=r"document\.mrz"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control", "document",
                          document={"mrz": bad})


def test_refusals_leave_nothing_stored(hub: HubFixture, pair: tuple[Member, Member],
                                       fvc2004: Path) -> None:
    aus, idn = pair
    agree(hub, aus, idn, terms(daily=1))

    def count() -> int:
        return len(aus.checks.recent())

    cases = [
        (dict(agreement="AUS-IDN-1999-01"), e.NoAgreement),
        (dict(purpose="investigation"), e.PurposeNotAgreed),
        (dict(purpose="tourism"), CheckError),
        (dict(partner="THA"), e.NoAgreement),
        (dict(max_candidates=9), CheckError),
    ]
    for change, error in cases:
        args = dict(partner="IDN", agreement="AUS-IDN-2027-01", purpose="border_control")
        args.update(change)  # type: ignore[arg-type]
        with pytest.raises(error):
            aus.checks.submit(OFFICER, args["partner"], args["agreement"], args["purpose"],
                              "document", document={"mrz": TD3},
                              max_candidates=change.get("max_candidates"))  # type: ignore[arg-type]
    # A print with too few minutiae is refused with the officer's reason.
    template = extract_template(image(fvc2004, "101", 1))
    sparse = dataclasses.replace(template, views=(dataclasses.replace(
        template.views[0], minutiae=template.views[0].minutiae[:4]),))
    assert isinstance(sparse, MinutiaeTemplate)
    with pytest.raises(CheckError, match=r"fingers: finger 2 .* only 4 minutiae"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                          "fingerprint_1n", fingers=[(2, sparse)])
    assert count() == 0
    # The quota: the second check of the day is refused by the hub; the check says so.
    aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control", "document",
                      document={"mrz": TD3})
    second = aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                               "document", document={"mrz": TD3})
    pump(hub, aus, idn)
    refused = aus.checks.get(second.id)
    assert refused is not None and refused.state == "refused"
    assert refused.error is not None and refused.error["code"] == "quota_exhausted"


def test_responder_rechecks_every_term_and_keeps_no_probe(
        hub: HubFixture, pair: tuple[Member, Member], fvc2004: Path) -> None:
    """A requester that skips its own checks (another member's implementation, say) is
    refused by the responder with the term that fails, and the probe is not kept."""
    aus, idn = pair
    agree(hub, aus, idn, terms())
    record = base64.b64encode(b"not an ISO record").decode()
    bodies = {
        "purpose_not_agreed": {"purpose": "investigation", "query_type": "document",
                               "probe": {"document": {"mrz": TD3}}},
        "query_type_not_agreed_or_bad": {"purpose": "asylum", "query_type": "fingerprint_1n",
                                         "probe": {"fingers": [{"position": 2, "format":
                                                   "iso-19794-2:2011", "data": record}]}},
        "bad_mrz": {"purpose": "asylum", "query_type": "document",
                    "probe": {"document": {"mrz": TD3[:-1] + "9"}}},
    }
    ids = {}
    with aus.node.db.session() as s:
        for name, body in bodies.items():
            check_id = str(__import__("uuid").uuid4())
            ids[name] = check_id
            aus.node.queue(s, "check.request", "IDN",
                           {"check": check_id, "max_candidates": 1, **body},
                           agreement="AUS-IDN-2027-01")
    pump(hub, aus, idn)
    codes = {name: idn.checks.get(i) for name, i in ids.items()}
    assert codes["purpose_not_agreed"].error["code"] == "purpose_not_agreed"  # type: ignore[union-attr,index]
    assert codes["query_type_not_agreed_or_bad"].error["code"] == "bad_probe"  # type: ignore[union-attr,index]
    bad = codes["bad_mrz"]
    assert bad is not None and bad.error is not None and bad.error["code"] == "bad_probe"
    assert "check digit" in bad.error["message"]
    assert {c.state for c in codes.values() if c} == {"refused"}
    with idn.node.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CheckProbe)) == 0
    with aus.node.db.session() as s:
        answers = [json.loads(b) for b in s.scalars(
            select(InboxMessage.body).where(InboxMessage.type == "check.answer"))]
    assert sorted(a["error"]["code"] for a in answers) == ["bad_probe", "bad_probe",
                                                           "purpose_not_agreed"]


def test_more_refusals_name_the_term_and_store_nothing(
        hub: HubFixture, pair: tuple[Member, Member], fvc2004: Path) -> None:
    """The refusals the issue lists that the test above does not reach: a query type not
    agreed, an agreement past its validity, a partner unknown to the directory or not a
    member code at all, and a print too poor to search with."""
    aus, idn = pair
    today = utcnow().date()
    doc_only = dataclasses.replace(terms(), directions=(dataclasses.replace(
        terms().directions[0], query_types=("document",)),))
    agree(hub, aus, idn, doc_only)
    past = dataclasses.replace(terms(agreement_id="AUS-IDN-2020-01"),
                               valid_from=today - timedelta(days=400),
                               valid_until=today - timedelta(days=35))
    agree(hub, aus, idn, past)
    print_ = image(fvc2004, "101", 2)
    with pytest.raises(e.QueryTypeNotAgreed, match=r"query_type: fingerprint_1n is not agreed"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-01", "border_control",
                          "fingerprint_1n", fingers=[(2, print_)])
    with pytest.raises(e.AgreementInactive, match=r"agreement: AUS-IDN-2020-01 is expired"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2020-01", "border_control", "document",
                          document={"mrz": TD3})
    with pytest.raises(e.NoAgreement, match=r"agreement: AUS-IDN-2027-01 is not between AUS "
                                            r"and NZL"):
        aus.checks.submit(OFFICER, "NZL", "AUS-IDN-2027-01", "border_control", "document",
                          document={"mrz": TD3})
    with pytest.raises(CheckError, match=r"partner: 'idn!' is not another member's code"):
        aus.checks.submit(OFFICER, "idn!", "AUS-IDN-2027-01", "border_control", "document",
                          document={"mrz": TD3})
    with pytest.raises(CheckError, match=r"partner: 'AUS' is not another member's code"):
        aus.checks.submit(OFFICER, "AUS", "AUS-IDN-2027-01", "border_control", "document",
                          document={"mrz": TD3})
    # A washed-out capture: NFIQ 2 scores it below the probe minimum, with advice.
    pixels = print_.pixels.astype(np.float32)
    faint = from_array((255 - (255 - pixels) * 0.04).clip(0, 255).astype(np.uint8))
    full = terms(agreement_id="AUS-IDN-2027-02")
    agree(hub, aus, idn, full)
    with pytest.raises(CheckError, match=r"fingers: .*(quality (\d+) < 20|quality unknown)"):
        aus.checks.submit(OFFICER, "IDN", "AUS-IDN-2027-02", "border_control",
                          "fingerprint_1n", fingers=[(2, faint)])
    assert aus.checks.recent() == []
    with aus.node.db.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.type == "check.request")) == 0
