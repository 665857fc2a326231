"""The node's audit trail in its database (SQLite and PostgreSQL): appends that commit
with their action or not at all, never fork under concurrency, and every kind of
tampering with the stored rows caught by verification; and `lintas audit`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from lintas.audit import Witness
from lintas.cli.main import app
from lintas.node import node_database
from lintas.node.audit import AuditLog
from lintas.node.models import Setting
from lintas.storage import Database


@pytest.fixture
def database(backend: str, new_db_url: Callable[[str], str]) -> Database:
    db = node_database(new_db_url(backend))
    db.upgrade()
    return db


def fill(log: AuditLog, n: int) -> None:
    for i in range(1, n + 1):
        log.append(f"officer{i}", "officer", "check.submitted", "accepted",
                   purpose="border control", agreement="AUS-IDN-1", message_ids=[f"m-{i}"],
                   details={"fingers": 2, "probe_sha256": f"{i:064x}"})


def problems(log: AuditLog, *witnesses: Witness) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in log.verify(witnesses).problems]


def test_entries_chain_and_read_back_exactly(database: Database) -> None:
    log = AuditLog(database)
    assert log.head() is None and log.verify().intact
    fill(log, 5)
    entries = list(log.entries(batch=2))  # several batches
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(e.computed_digest() == e.digest for e in entries)  # microseconds survive
    assert entries[2].details == {"fingers": 2, "probe_sha256": f"{3:064x}"}
    assert log.head() == Witness(5, entries[-1].digest)
    assert log.verify([log.head()]).intact  # type: ignore[list-item]


def test_an_entry_commits_with_its_action_or_not_at_all(database: Database) -> None:
    log = AuditLog(database)
    fill(log, 2)
    with pytest.raises(RuntimeError), database.session() as s:
        s.add(Setting(key="action", value="done"))
        log.record(s, "admin", "administrator", "settings.changed", "ok")
        raise RuntimeError("the action fails after its entry was written")
    with database.session() as s:
        assert s.get(Setting, "action") is None
    assert log.head().seq == 2 and log.verify().intact  # type: ignore[union-attr]
    with database.session() as s:
        s.add(Setting(key="action", value="done"))
        log.record(s, "admin", "administrator", "settings.changed", "ok")
    assert log.head().seq == 3 and log.verify().intact  # type: ignore[union-attr]


def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    log = AuditLog(database)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(15):
                log.append(f"w{worker}", "officer", "check.submitted", "accepted",
                           details={"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = log.verify()
    assert result.intact and result.entries == 60 and result.head.seq == 60  # type: ignore[union-attr]


def tamper(database: Database, *statements: str) -> None:
    with database.connection() as c:
        for statement in statements:
            c.execute(text(statement))


def test_edited_deleted_reordered_and_truncated_entries_are_all_caught(
        database: Database) -> None:
    log = AuditLog(database)
    fill(log, 8)
    witness = log.head()
    assert witness is not None
    tamper(database, "UPDATE audit_log SET outcome = 'refused' WHERE seq = 2")
    assert problems(log) == [(2, "edited")]
    tamper(database, "DELETE FROM audit_log WHERE seq = 4")
    assert problems(log) == [(2, "edited"), (4, "missing"), (5, "unlinked")]
    # Swap entries 6 and 7 by renumbering them.
    tamper(database, "UPDATE audit_log SET seq = 1006 WHERE seq = 6",
           "UPDATE audit_log SET seq = 6 WHERE seq = 7",
           "UPDATE audit_log SET seq = 7 WHERE seq = 1006")
    assert [p for p in problems(log) if p[0] in (6, 7)] == [(6, "moved"), (7, "moved")]
    # Cut the tail and the head row with it: only the witness can tell.
    tamper(database, "DELETE FROM audit_log WHERE seq >= 8",
           "UPDATE audit_head SET seq = 7 WHERE id = 1")
    assert (8, "truncated") not in problems(log)
    assert (8, "truncated") in problems(log, witness)


runner = CliRunner()


def test_audit_cli_says_intact_or_names_each_problem(tmp_path: Path) -> None:
    data = tmp_path / "node"
    database = node_database(f"sqlite:///{data / 'node.db'}")
    database.upgrade()
    log = AuditLog(database)
    fill(log, 3)
    head = log.head()
    assert head is not None

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["audit", *args, "--data-dir", str(data)])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.exit_code, result.output

    assert run("head") == (0, f"3:{head.digest}\n")
    code, out = run("verify", "--expect-head", f"3:{head.digest}")
    assert code == 0 and "intact" in out and "3 entries" in out
    code, out = run("verify", "--expect-head", "3:nothex")
    assert code == 2 and "SEQ:DIGEST" in out
    tamper(database, "UPDATE audit_log SET actor = 'someone' WHERE seq = 2")
    code, out = run("verify", "--expect-head", f"5:{head.digest}")
    assert code == 1
    assert "edited" in out and "truncated" in out and "2 problem(s)" in out
    code, out = runner.invoke(app, ["audit", "verify", "--data-dir",
                                    str(tmp_path / "none")]).exit_code, ""
    assert code == 2
