"""`lintas audit report` on the databases of two nodes after real document checks through
a real hub (SQLite and PostgreSQL): the summary it prints, the CSV it writes, and bad
options or a broken trail refused in one clear line."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from lintas.cli.main import app
from lintas.node.report import CSV_COLUMNS, build_report, to_csv
from lintas.storage import utcnow
from tests.conftest import HubFixture
from tests.node.test_checks import ADMIN, OFFICER, TD3, Member, agree, pair, pump, terms

__all__ = ["pair"]  # fixture used here
runner = CliRunner()
AGREEMENT = "AUS-IDN-2027-01"


def run(m: Member, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "report", *args, "--db", m.node.db.url],
                           env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of an error message: {result.exception!r}")
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def checked(hub: HubFixture, pair: tuple[Member, Member]) -> tuple[Member, Member]:
    """A stolen passport found (hit) and an unknown one (no-hit), AUS asking IDN."""
    aus, idn = pair
    agree(hub, aus, idn, terms(daily=5, agreement_id=AGREEMENT))
    idn.register.report("L898902C3", "UTO", "P", "stolen", ADMIN)
    aus.checks.submit(OFFICER, "IDN", AGREEMENT, "border_control", "document",
                      document={"mrz": TD3})
    aus.checks.submit(OFFICER, "IDN", AGREEMENT, "asylum", "document",
                      document={"number": "X1234567", "issuing_state": "UTO"})
    pump(hub, aus, idn)
    return aus, idn


def row(out: str, label: str) -> str:
    """The cells of one figure's row in the printed table."""
    match = re.search(rf"│ {re.escape(label)}\s+│ (.*?)\s+│", out)
    assert match is not None, out
    return match[1]


def test_summary_and_csv(checked: tuple[Member, Member], tmp_path: Path) -> None:
    aus, idn = checked
    today = utcnow().date().isoformat()
    # The default period: the last 30 days.
    code, out = run(aus)
    assert code == 0, out
    assert "Data-protection report of AUS" in out and f"to {today}" in out
    assert "audit trail intact" in out
    assert f"{AGREEMENT} with IDN (active)" in out and "requests we sent" in out
    assert row(out, "checks") == "2"
    assert row(out, "outcomes") == "hit 1, no_hit 1"
    assert row(out, "by purpose") == "border_control 1, asylum 1"
    assert row(out, "busiest day vs daily quota") == f"2 of 5 (on {today})"
    assert "withheld" not in out
    code, out = run(idn, "--agreement", AGREEMENT, "--from", today, "--to", today)
    assert code == 0 and "requests we answered" in out
    assert row(out, "withheld by a protection") == "0"
    assert row(out, "response time").startswith("2 answers: median ")
    code, out = run(idn, "--agreement", AGREEMENT, "--no-withheld")
    assert code == 0 and "withheld" not in out

    target = tmp_path / "reports" / "q.csv"
    target.parent.mkdir()
    target.write_text("an older report\n")
    code, out = run(aus, "--agreement", AGREEMENT, "--from", today, "--to", today,
                    "--csv", str(target))
    assert code == 0 and f"CSV written to {target}" in out.replace("\n", "")
    assert sorted(p.name for p in target.parent.iterdir()) == ["q.csv"]  # no temporary left
    written = target.read_bytes().decode("utf-8")  # as written: RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(written)))
    assert tuple(rows[0]) == CSV_COLUMNS
    figures = {(r["metric"], r["key"]): r["value"] for r in rows}
    assert figures["checks", "total"] == "2"
    assert figures["outcome", "hit"] == figures["outcome", "no_hit"] == "1"
    assert figures["query_type", "document"] == "2"
    assert figures["daily_quota", "quota"] == "5" and figures["daily_quota", "max_used"] == "2"
    assert {(r["member"], r["partner"], r["side"]) for r in rows} == {("AUS", "IDN", "requester")}
    # The file holds what the library gives for the same period.
    day = utcnow().date()
    assert written == to_csv(build_report(aus.node.db, AGREEMENT, day, day))


BAD = [
    (("--from", "2027-13-01"), "--from: '2027-13-01' is not a date like 2027-01-31"),
    (("--to", "31/01/2027"), "--to: '31/01/2027' is not a date"),
    (("--from", "2027-02-01", "--to", "2027-01-01"), "--to: 2027-01-01 is before the "
                                                    "period's start (2027-02-01)"),
    (("--from", "2000-01-01", "--to", "2027-01-01"), "--from: a period of at most"),
    (("--agreement", "no such"), "--agreement: 'no such' is not an agreement id"),
    (("--agreement", "AUS-THA-2027-01"), "--agreement: AUS-THA-2027-01 is not known"),
    (("--csv", "/no/such/folder/r.csv"), "--csv: the folder /no/such/folder does not exist"),
    (("--expect-head", "3:nothex"), "--expect-head: '3:nothex' is not SEQ:DIGEST"),
]


def test_bad_options_are_one_clear_line(checked: tuple[Member, Member]) -> None:
    aus, _ = checked
    for args, needle in BAD:
        code, out = run(aus, *args)
        assert code == 2 and needle in " ".join(out.split()), (args, out)
        assert len(out.strip().splitlines()) <= 2, out  # one line, wrapped at most once


def test_a_trail_that_does_not_verify(checked: tuple[Member, Member], tmp_path: Path) -> None:
    _, idn = checked
    head = idn.node.audit.head()
    assert head is not None
    code, out = run(idn, "--expect-head", f"{head.seq}:{head.digest}")
    assert code == 0 and "checked against 1 witnessed head(s)" in out
    with idn.node.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET outcome = 'no_hit' WHERE outcome = 'hit'"))
    code, out = run(idn)
    assert code == 1 and "the audit trail is not intact" in out
    assert "lintas audit verify" in out and "│" not in out  # no figures
    target = tmp_path / "broken.csv"
    code, out = run(idn, "--allow-broken", "--csv", str(target))
    assert code == 0 and "AUDIT TRAIL NOT INTACT" in out and "cannot be trusted" in out
    assert {r["chain_intact"] for r in csv.DictReader(target.open())} == {"false"}


def test_no_node_database(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "report", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no node database" in result.output
