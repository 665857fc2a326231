"""`lintas user ...` and `lintas documents ...` end to end on a temporary SQLite node
database: what they print, what they write, and refusals as one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lintas.cli.main import app
from lintas.crypto import generate
from lintas.node import node_database
from lintas.node.audit import AuditLog
from lintas.node.documents import DocumentRegister
from lintas.node.runtime import init_node
from lintas.node.users import Principal, Users
from tests.conftest import PASSPHRASE
from tests.documents.test_mrz import TD1_LONG, TD3

runner = CliRunner()


def run(*args: str, node: Path, input: str | None = None) -> tuple[int, str, str]:
    """(exit code, everything printed, standard output alone)."""
    result = runner.invoke(app, [*args, "--data-dir", str(node)], input=input,
                           env={"USER": "tester", "LOGNAME": "tester"})
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of an error message: {result.exception!r}"
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output, result.stdout


@pytest.fixture
def node(tmp_path: Path) -> Path:
    data = tmp_path / "node"
    node_database(f"sqlite:///{data / 'node.db'}").upgrade()
    return data


def users_of(node: Path) -> Users:
    return Users(node_database(f"sqlite:///{node / 'node.db'}"))


def register_of(node: Path) -> DocumentRegister:
    return DocumentRegister(node_database(f"sqlite:///{node / 'node.db'}"))


def test_the_admin_made_by_init_is_listed_and_its_token_works(node: Path) -> None:
    db = node_database(f"sqlite:///{node / 'node.db'}")
    result = init_node(db, "AUS", "http://127.0.0.1:1", generate("sig").public_jwk(),
                       PASSPHRASE)
    code, out, _ = run("user", "list", node=node)
    assert code == 0 and "1 active users of 1" in out
    assert "│ admin    │ admin │ yes " in out
    assert users_of(node).authenticate(result.api_token) == Principal("admin", "admin")


def test_user_lifecycle(node: Path) -> None:
    code, out, stdout = run("user", "add", "admin", "--role", "admin", node=node)
    assert code == 0 and "shown only now" in out
    code, out, stdout = run("user", "add", "siti.rahma", "--role", "officer", node=node)
    token = stdout.strip()
    assert code == 0 and len(token) >= 43 and "\n" not in token  # the token alone on stdout
    users = users_of(node)
    assert users.authenticate(token) == Principal("siti.rahma", "officer")

    code, out, _ = run("user", "set-role", "siti.rahma", "--role", "supervisor", node=node)
    assert code == 0 and "siti.rahma is now supervisor" in out
    code, out, stdout = run("user", "new-token", "siti.rahma", node=node)
    fresh = stdout.strip()
    assert code == 0 and "shown only now" in out and fresh != token
    assert users.authenticate(token) is None
    assert users.authenticate(fresh) == Principal("siti.rahma", "supervisor")
    code, out, _ = run("user", "disable", "siti.rahma", "--reason", "left the service",
                       node=node)
    assert code == 0 and "disabled siti.rahma (left the service)" in out
    assert users.authenticate(fresh) is None

    code, out, _ = run("user", "list", node=node)
    assert code == 0 and "1 active users of 2" in out and "left" in out and "the service" in out
    # The local operator acts as an admin, named after the OS user.
    entries = list(AuditLog(users.db).entries())
    assert {(e.actor, e.role) for e in entries} == {("cli:tester", "admin")}
    assert [e.action for e in entries] == ["user.add", "user.add", "user.role", "user.token",
                                           "user.disable"]


@pytest.mark.parametrize(("args", "message"), [
    (("user", "add", "Bob", "--role", "officer"),
     "error: username: 'Bob' must be 1-64 characters a-z 0-9 . _ - starting with a"),
    (("user", "add", "bob", "--role", "root"),
     "error: role: 'root' must be one of officer, supervisor, dpo, admin"),
    (("user", "add", "admin", "--role", "dpo"), "error: username: 'admin' already exists"),
    (("user", "set-role", "admin", "--role", "officer"),
     "error: username: 'admin' is the last active admin and cannot be demoted"),
    (("user", "disable", "admin", "--reason", "test"),
     "error: username: 'admin' is the last active admin and cannot be disabled"),
    (("user", "disable", "admin", "--reason", " "), "error: reason: required"),
    (("user", "new-token", "nobody"), "error: username: no user 'nobody'"),
    (("user", "disable", "admin"), "Missing option '--reason'"),
    (("user", "add", "bob"), "Missing option '--role'"),
])
def test_user_refusals_are_one_clear_line(node: Path, args: tuple[str, ...],
                                          message: str) -> None:
    run("user", "add", "admin", "--role", "admin", node=node)
    code, out, _ = run(*args, node=node)
    assert code == 2 and message in " ".join(out.split())


def test_commands_on_a_missing_node_say_to_run_init(tmp_path: Path) -> None:
    for args in (("user", "list"), ("documents", "list")):
        code, out, _ = run(*args, node=tmp_path / "none")
        assert code == 2 and "lintas node init" in out


def test_report_check_list_withdraw(node: Path) -> None:
    code, out, _ = run("documents", "report", "L898902C3", "--state", "UTO", "--type", "P",
                       "--status", "stolen", "--reference", "UTO-PD 118", node=node)
    assert code == 0 and "registered entry 1: UTO L898902C3 (P) stolen" in out
    # The MRZ typed on one line, its lines separated by a space, or given on stdin.
    code, out, _ = run("documents", "check", "--mrz", TD3.replace("\n", " "), node=node)
    assert code == 0 and "HIT: UTO L898902C3 is registered as stolen (type P, since" in out
    code, out, _ = run("documents", "check", "--mrz", "-", node=node, input=TD3 + "\n")
    assert code == 0 and "HIT" in out
    code, out, _ = run("documents", "check", "--mrz", TD1_LONG, node=node)
    assert code == 0 and "no entry: UTO D23145890734 is not in the register" in out
    code, out, _ = run("documents", "check", "--number", "l898 902c3", "--state", "uto",
                       node=node)
    assert code == 0 and "HIT" in out

    code, out, _ = run("documents", "list", node=node)
    assert code == 0 and "1 active entries" in out and "UTO L898902C3" in out
    code, out, _ = run("documents", "withdraw", "--number", "L898902C3", "--state", "UTO",
                       "--reason", "found by its holder", node=node)
    assert code == 0 and "withdrawn entry 1: UTO L898902C3 (found by its holder)" in out
    code, out, _ = run("documents", "check", "--number", "L898902C3", "--state", "UTO",
                       node=node)
    assert code == 0 and "no entry" in out
    code, out, _ = run("documents", "list", "--all", node=node)
    assert code == 0 and "0 active entries, 1 in all" in out and "its holder" in out
    code, out, _ = run("documents", "report", "L898902C3", "--state", "UTO", "--type", "P",
                       "--status", "lost", node=node)
    assert code == 0 and "registered entry 2" in out
    code, out, _ = run("documents", "withdraw", "2", "--reason", "reported in error",
                       node=node)
    assert code == 0 and "withdrawn entry 2" in out
    assert [e.action for e in AuditLog(register_of(node).db).entries()] == [
        "document.report", "document.withdraw", "document.report", "document.withdraw"]


BAD_TD3 = TD3[:54] + "7" + TD3[55:]  # the document number's check digit 6 -> 7


@pytest.mark.parametrize(("args", "message"), [
    (("documents", "check", "--mrz", BAD_TD3),
     "error: MRZ document_number: check digit 7 does not match 'L898902C3' (it should be 6)"),
    (("documents", "check", "--mrz", "P<UTO"), "error: MRZ mrz: lines of 5 characters"),
    (("documents", "check"), "error: give --mrz, or --number and --state"),
    (("documents", "check", "--number", "X1"), "error: --number and --state: give both"),
    (("documents", "check", "--number", "X-1", "--state", "AUS"),
     "error: document_number: 'X-1' must be 1-20 letters A-Z and digits"),
    (("documents", "report", "L898902C3", "--state", "UTO", "--type", "P", "--status",
      "lost"), "error: document_number: UTO L898902C3 is already registered (stolen since"),
    (("documents", "report", "X1", "--state", "AUS", "--type", "Q", "--status", "lost"),
     "error: document_type: 'Q' must be P (passport), I, A or C (identity card) or V"),
    (("documents", "report", "X1", "--state", "AUS", "--type", "P", "--status", "gone"),
     "error: status: 'gone' must be one of lost, stolen, revoked"),
    (("documents", "withdraw", "--reason", "x"),
     "error: ENTRY: give an entry id, or --number and --state"),
    (("documents", "withdraw", "7", "--reason", "x"), "error: entry: no entry 7"),
    (("documents", "withdraw", "1", "--reason", ""), "error: reason: required"),
    (("documents", "withdraw", "1"), "Missing option '--reason'"),
    (("documents", "withdraw", "--number", "X9", "--state", "AUS", "--reason", "x"),
     "error: document_number: AUS X9 has no active entry"),
    (("documents", "import", "no-such.csv"), "'no-such.csv' does not exist"),
])
def test_document_refusals_are_one_clear_line(node: Path, args: tuple[str, ...],
                                              message: str) -> None:
    run("documents", "report", "L898902C3", "--state", "UTO", "--type", "P", "--status",
        "stolen", node=node)
    code, out, _ = run(*args, node=node)
    assert code == 2 and message in " ".join(out.split())


def test_import_is_all_or_nothing_and_lists_refused_rows(node: Path, tmp_path: Path) -> None:
    header = "document_number,issuing_state,document_type,status,reference,note\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "A1,AUS,P,lost,,\nA1,AUS,P,stolen,,\nB2,AU5,P,lost,,\n",
                   encoding="utf-8")
    code, out, _ = run("documents", "import", str(bad), node=node)
    flat = " ".join(out.split())
    assert code == 1 and "2 of 3 rows refused: nothing was imported" in flat
    assert "3/3" in out, "the progress bar's last state"
    assert "│ 3 │ document_number │ AUS A1 is already on line 2" in flat
    assert "│ 4 │ issuing_state │ 'AU5' must be the ICAO code" in flat
    assert register_of(node).count() == 0

    good = tmp_path / "good.csv"
    good.write_text("\ufeff" + header + "A1,AUS,P,lost,AFP-1,\nB2,D<<,I,revoked,,\"a note,"
                    " quoted\"\n", encoding="utf-8")
    code, out, _ = run("documents", "import", str(good), node=node)
    assert code == 0 and "imported 2 entries from good.csv" in out
    assert register_of(node).check_number("B2", "D").hit

    empty = tmp_path / "empty.csv"
    empty.write_text(header)
    code, out, _ = run("documents", "import", str(empty), node=node)
    assert code == 0 and "empty.csv holds no rows: nothing to import" in out

    for name, content, message in (
            ("cols.csv", b"number,state\nA1,AUS\n", "error: columns: unknown 'number', "
                                                    "'state'; missing document_number"),
            ("latin.csv", header.encode() + "Ä1,AUS,P,lost,,\n".encode("latin-1"),
             "is not UTF-8 text")):
        path = tmp_path / name
        path.write_bytes(content)
        code, out, _ = run("documents", "import", str(path), node=node)
        assert code == 2 and message in " ".join(out.split())
