"""The data-protection report (`lintas.node.report`), from the audit trails of two nodes
after real checks through a real hub on loopback, on SQLite and PostgreSQL: the exact
figures on each side, the quotas, the CSV read back, refusals of bad input, and a trail
that does not verify."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from lintas.audit import Witness
from lintas.node.models import Check
from lintas.node.report import (
    CSV_COLUMNS,
    BrokenChain,
    Report,
    ReportError,
    ResponseTimes,
    build_report,
    metrics,
    summary_lines,
    to_csv,
)
from lintas.storage import Database, utcnow
from tests.conftest import HubFixture
from tests.node.test_checks import (
    ADMIN,
    OFFICER,
    SUPERVISOR,
    TD3,
    Member,
    agree,
    enrolled,
    image,
    pair,
    pump,
    terms,
)

__all__ = ["enrolled", "pair"]  # fixtures used here

AUTO, REVIEW = "AUS-IDN-2027-01", "AUS-IDN-2027-02"


def scenario(hub: HubFixture, aus: Member, idn: Member, fvc2004: Path) -> dict[str, str]:
    """Under AUTO (automatic answers, 4 checks a day): a hit partly disclosed, a hit whose
    disclosure is denied, a no-hit because a protection withheld the match, a document
    no-hit, and a fifth request the hub refuses (quota). Under REVIEW (a supervisor
    first): a request the supervisor rejects, and one AUS cancels while it waits."""
    agree(hub, aus, idn, terms(daily=4, agreement_id=AUTO))
    agree(hub, aus, idn, terms(mode="review", agreement_id=REVIEW))
    idn.checks.protect(ADMIN, "103", "refugee", states=["AUS"], reason="recognised refugee")

    def fingers(person: str, purpose: str) -> str:
        return aus.checks.submit(OFFICER, "IDN", AUTO, purpose, "fingerprint_1n",
                                 fingers=[(2, image(fvc2004, person, 3))]).id

    ids = {"partial": fingers("101", "border_control"), "denied": fingers("102", "asylum"),
           "withheld": fingers("103", "border_control")}
    ids["unknown_document"] = aus.checks.submit(
        OFFICER, "IDN", AUTO, "border_control", "document",
        document={"number": "X1234567", "issuing_state": "UTO"}).id
    pump(hub, aus, idn)
    ids["over_quota"] = aus.checks.submit(OFFICER, "IDN", AUTO, "border_control", "document",
                                          document={"mrz": TD3}).id
    aus.checks.request_disclosure(OFFICER, ids["partial"], "c1", ["name", "nationality"],
                                  "asylum claim under examination")
    aus.checks.request_disclosure(OFFICER, ids["denied"], "c1", ["name"], "identity")
    ids["rejected"] = aus.checks.submit(OFFICER, "IDN", REVIEW, "asylum", "document",
                                        document={"mrz": TD3}).id
    ids["cancelled"] = aus.checks.submit(OFFICER, "IDN", REVIEW, "border_control", "document",
                                         document={"mrz": TD3}).id
    pump(hub, aus, idn)
    idn.checks.decide(SUPERVISOR, ids["partial"], ["name"])
    idn.checks.decide(SUPERVISOR, ids["denied"], [], reason="not necessary for identity")
    idn.checks.reject(SUPERVISOR, ids["rejected"], "no ground given")
    aus.checks.cancel(OFFICER, ids["cancelled"], "the traveller was identified")
    pump(hub, aus, idn)
    states = {name: aus.checks.get(i).state for name, i in ids.items()}  # type: ignore[union-attr]
    assert states == {"partial": "disclosed", "denied": "disclosure_denied",
                      "withheld": "no_hit", "unknown_document": "no_hit",
                      "over_quota": "refused", "rejected": "refused",
                      "cancelled": "cancelled"}
    return ids


def zeros(*keys: str) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


QUERY_TYPES = ("fingerprint_1n", "fingerprint_1to1", "document")
PURPOSES = ("border_control", "visa_processing", "asylum", "victim_identification",
            "return_readmission", "investigation")
OUTCOMES = ("hit", "no_hit", "refused", "expired", "cancelled")
DECISIONS = ("approved", "partial", "denied", "expired")


def test_report_of_both_sides_after_real_checks(
        hub: HubFixture, enrolled: tuple[Member, Member], fvc2004: Path) -> None:
    aus, idn = enrolled
    scenario(hub, aus, idn, fvc2004)
    today = utcnow().date()
    sent = build_report(aus.node, None, today - timedelta(days=6), today)
    answered = build_report(idn.node, None, today - timedelta(days=6), today)
    for report, member in ((sent, "AUS"), (answered, "IDN")):
        assert report.member == member and report.chain.intact
        assert report.chain.entries == len(list(member_of(aus, idn, member).node.audit.entries()))
        assert [(a.agreement, a.partner, a.status) for a in report.agreements] == [
            (AUTO, "IDN" if member == "AUS" else "AUS", "active"),
            (REVIEW, "IDN" if member == "AUS" else "AUS", "active")]
        # One direction (AUS asks IDN): one side on each node.
        expected_side = "requester" if member == "AUS" else "responder"
        assert {s.side for a in report.agreements for s in a.sides} == {expected_side}

    # AUS: the requests it sent.
    auto = sent.agreement(AUTO).side("requester")  # type: ignore[union-attr]
    assert auto is not None
    assert auto.checks == 5
    assert auto.by_query_type == {**zeros(*QUERY_TYPES), "fingerprint_1n": 3, "document": 2}
    assert auto.by_purpose == {**zeros(*PURPOSES), "border_control": 4, "asylum": 1}
    assert auto.outcomes == {**zeros(*OUTCOMES), "hit": 2, "no_hit": 2, "refused": 1}
    assert auto.disclosure_requests == 2
    assert auto.decisions == {**zeros(*DECISIONS), "partial": 1, "denied": 1}
    # Four answers from IDN; the hub's refusal is no answer.
    assert auto.response_seconds.count == 4
    # The quota counts what the hub accepted: 4 of 4 today, not the refused fifth.
    q = auto.quota
    assert (q.daily_quota, q.max_per_day, q.busiest_day) == (4, 4, today)
    assert (q.annual_quota, dict(q.annual_used)) == (40, {today.year: 4})
    assert auto.withheld is None  # never on the requester's side
    review = sent.agreement(REVIEW).side("requester")  # type: ignore[union-attr]
    assert review is not None and review.checks == 2
    assert review.by_query_type["document"] == 2
    assert review.by_purpose == {**zeros(*PURPOSES), "border_control": 1, "asylum": 1}
    assert review.outcomes == {**zeros(*OUTCOMES), "refused": 1, "cancelled": 1}
    assert review.disclosure_requests == 0 and review.decisions == zeros(*DECISIONS)
    assert review.response_seconds.count == 1  # the supervisor's rejection
    assert (review.quota.daily_quota, review.quota.max_per_day) == (50, 2)
    assert (review.quota.annual_quota, dict(review.quota.annual_used)) == (500, {today.year: 2})

    # IDN: the requests it answered (the fifth never reached it).
    auto = answered.agreement(AUTO).side("responder")  # type: ignore[union-attr]
    assert auto is not None
    assert auto.checks == 4
    assert auto.by_query_type == {**zeros(*QUERY_TYPES), "fingerprint_1n": 3, "document": 1}
    assert auto.by_purpose == {**zeros(*PURPOSES), "border_control": 3, "asylum": 1}
    assert auto.outcomes == {**zeros(*OUTCOMES), "hit": 2, "no_hit": 2}
    assert auto.disclosure_requests == 2
    assert auto.decisions == {**zeros(*DECISIONS), "partial": 1, "denied": 1}
    assert auto.response_seconds.count == 4
    assert (auto.quota.daily_quota, auto.quota.max_per_day) == (4, 4)
    assert auto.withheld == 1  # the refugee's record, kept out of the answer
    review = answered.agreement(REVIEW).side("responder")  # type: ignore[union-attr]
    assert review is not None and review.checks == 2
    assert review.outcomes == {**zeros(*OUTCOMES), "refused": 1, "cancelled": 1}
    assert review.response_seconds.count == 1 and review.withheld == 0

    # Response times: real durations, in order.
    for report in (sent, answered):
        for a in report.agreements:
            for s in a.sides:
                t = s.response_seconds
                assert t.median is not None and t.p95 is not None and t.max is not None
                assert 0 <= t.median <= t.p95 <= t.max < 600

    # The audit trail and the checks table agree on what happened.
    for report, m in ((sent, aus), (answered, idn)):
        with m.node.db.session() as session:
            stored = list(session.scalars(select(Check)))
        for a in report.agreements:
            for s in a.sides:
                mine = [r for r in stored if r.agreement == a.agreement and r.side == s.side]
                assert s.checks == len(mine)
                assert dict(s.by_query_type) == {
                    **zeros(*QUERY_TYPES), **Counter(r.query_type for r in mine)}
                assert s.decisions["partial"] == sum(r.decision == "partial" for r in mine)
                assert s.decisions["denied"] == sum(r.decision == "denied" for r in mine)

    # The same report from the database alone (as the command line reads it), and JSON.
    now = datetime(2030, 1, 1, tzinfo=UTC)
    from_node = build_report(idn.node, AUTO, today, today, now=now)
    from_db = build_report(idn.node.db, AUTO, today, today, now=now)
    assert from_node == from_db
    data = json.loads(json.dumps(from_db.as_dict()))
    as_json = data["agreements"][0]["sides"][0]
    assert data["start"] == data["end"] == today.isoformat()
    assert as_json["withheld"] == 1 and as_json["quota"]["annual_used"] == {str(today.year): 4}
    assert "withheld" not in json.loads(json.dumps(sent.as_dict()))["agreements"][0]["sides"][0]
    quiet = build_report(idn.node, AUTO, today, today, sensitive=False)
    assert quiet.agreements[0].sides[0].withheld is None
    assert "withheld" not in to_csv(quiet)

    # The CSV reads back, row for row.
    check_csv(answered)
    csv_rows = check_csv(sent)
    assert csv_rows[AUTO, "requester", "outcome", "refused"] == "1"
    assert csv_rows[AUTO, "requester", "disclosure_decision", "partial"] == "1"
    assert csv_rows[AUTO, "requester", "daily_quota", "max_used"] == "4"
    assert csv_rows[AUTO, "requester", "daily_quota", "busiest_day"] == today.isoformat()
    assert csv_rows[AUTO, "requester", "annual_quota", f"used_{today.year}"] == "4"
    assert float(csv_rows[AUTO, "requester", "response_seconds", "max"]) >= 0

    # The readable summary carries the same figures.
    text_lines = summary_lines(answered)
    assert text_lines[0].startswith("Data-protection report of IDN")
    assert text_lines[1].startswith("audit trail intact")
    assert "    outcomes: hit 2, no_hit 2" in text_lines
    assert "    step-2 decisions: partial 1, denied 1" in text_lines
    assert "    withheld by a protection: 1" in text_lines
    assert not any("withheld" in line for line in summary_lines(sent))


def member_of(aus: Member, idn: Member, code: str) -> Member:
    return aus if code == "AUS" else idn


def check_csv(report: Report) -> dict[tuple[str, str, str, str], str]:
    """Parse the report's CSV and check it holds exactly the report's figures."""
    reader = csv.DictReader(io.StringIO(to_csv(report)))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    rows = list(reader)
    expected = [(a.agreement, s.side, *m) for a in report.agreements for s in a.sides
                for m in metrics(s)]
    assert [(r["agreement"], r["side"], r["metric"], r["key"], r["value"]) for r in rows] \
        == expected
    for r in rows:
        assert (r["member"], r["period_from"], r["period_to"], r["chain_intact"]) == (
            report.member, report.start.isoformat(), report.end.isoformat(), "true")
        assert r["partner"] in ("AUS", "IDN")
    return {(r["agreement"], r["side"], r["metric"], r["key"]): r["value"] for r in rows}


def test_a_period_before_the_checks_and_bad_input(
        hub: HubFixture, pair: tuple[Member, Member]) -> None:
    aus, idn = pair
    agree(hub, aus, idn, terms(agreement_id=AUTO))
    aus.checks.submit(OFFICER, "IDN", AUTO, "border_control", "document",
                      document={"mrz": TD3})
    pump(hub, aus, idn)
    today = utcnow().date()
    # Before the agreement: not listed unless asked for, and then all zeros.
    before = today - timedelta(days=30)
    assert build_report(aus.node, None, before, before).agreements == ()
    quiet = build_report(aus.node, AUTO, before, before).agreements[0].side("requester")
    assert quiet is not None and quiet.checks == 0 and quiet.response_seconds.count == 0
    assert quiet.response_seconds.median is None
    assert quiet.quota.max_per_day == 0 and quiet.quota.busiest_day is None
    assert dict(quiet.quota.annual_used) == {before.year: 0}  # year to date at its end
    got = build_report(aus.node, AUTO, today, today).agreements[0].side("requester")
    assert got is not None and got.checks == 1 and got.outcomes["no_hit"] == 1

    def refused(field: str, *args: object) -> str:
        with pytest.raises(ReportError) as info:
            build_report(aus.node, *args)  # type: ignore[arg-type]
        assert info.value.field == field
        return str(info.value)

    assert "before the period's start" in refused("to", AUTO, today, today - timedelta(1))
    assert "not a day" in refused("from", AUTO, datetime.now(UTC), today)
    assert "not a day" in refused("to", AUTO, today, "2027-01-01")
    assert "at most 3660 days" in refused("from", AUTO, date(2000, 1, 1), today)
    assert "not an agreement id" in refused("agreement", "a b", today, today)
    assert "not an agreement id" in refused("agreement", "x", today, today)
    assert "not known to this node" in refused("agreement", "AUS-THA-2027-01", today, today)


def tamper(db: Database, sql: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql))


def test_a_trail_that_does_not_verify_is_refused_or_marked(
        hub: HubFixture, pair: tuple[Member, Member]) -> None:
    aus, idn = pair
    agree(hub, aus, idn, terms(agreement_id=AUTO))
    aus.checks.submit(OFFICER, "IDN", AUTO, "border_control", "document",
                      document={"mrz": TD3})
    pump(hub, aus, idn)
    today = utcnow().date()
    head = idn.node.audit.head()
    assert head is not None
    # Cut short: only the hub's witness of a later head tells.
    assert build_report(idn.node, AUTO, today, today).chain.intact
    with pytest.raises(BrokenChain, match=r"cut off|truncated"):
        build_report(idn.node, AUTO, today, today,
                     witnesses=[Witness(head.seq + 3, "0" * 64)])
    # An answer rewritten after the fact.
    tamper(idn.node.db, "UPDATE audit_log SET outcome = 'hit' WHERE action = 'check.match'")
    with pytest.raises(BrokenChain) as info:
        build_report(idn.node, AUTO, today, today)
    assert info.value.field == "audit" and "not intact" in str(info.value)
    marked = build_report(idn.node, AUTO, today, today, allow_broken=True)
    assert not marked.chain.intact and [p.kind for p in marked.chain.problems] == ["edited"]
    assert summary_lines(marked)[1].startswith("AUDIT TRAIL NOT INTACT")
    assert {r["chain_intact"] for r in csv.DictReader(io.StringIO(to_csv(marked)))} == {"false"}


def test_response_time_figures() -> None:
    """Median, nearest-rank 95th percentile and maximum, in seconds."""
    assert ResponseTimes.of([]) == ResponseTimes(0, None, None, None)
    assert ResponseTimes.of([3.0]) == ResponseTimes(1, 3.0, 3.0, 3.0)
    assert ResponseTimes.of(float(s) for s in range(20, 0, -1)) == \
        ResponseTimes(20, 10.5, 19.0, 20.0)
    assert ResponseTimes.of([0.1234, 0.5, 100.0]) == ResponseTimes(3, 0.5, 100.0, 100.0)
