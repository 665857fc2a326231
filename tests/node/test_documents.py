"""The register of lost, stolen and revoked travel documents (SQLite and PostgreSQL):
reports, withdrawals and their history, checks by number and by ICAO 9303 specimen MRZs,
refusals naming their field, all-or-nothing CSV imports, and their audit entries."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from sqlalchemy.exc import IntegrityError

from lintas.documents.mrz import MachineReadableZone, MRZError, compose
from lintas.node import node_database
from lintas.node.audit import AuditLog
from lintas.node.documents import (
    DocumentConflict,
    DocumentError,
    DocumentRegister,
    UnknownEntry,
    read_csv,
)
from lintas.node.models import RegisteredDocument
from lintas.node.users import NotPermitted, Principal
from lintas.storage import Database, utcnow
from tests.documents.test_mrz import SPECIMENS, TD1, TD1_LONG, TD2, TD3

ADMIN = Principal("amir", "admin")
HEADER = "document_number,issuing_state,document_type,status,reference,note\n"


@pytest.fixture
def database(backend: str, new_db_url: Callable[[str], str]) -> Database:
    db = node_database(new_db_url(backend))
    db.upgrade()
    return db


@pytest.fixture
def register(database: Database) -> DocumentRegister:
    return DocumentRegister(database)


def actions(db: Database) -> list[tuple[str, str, str, dict[str, object]]]:
    return [(e.actor, e.role, e.action, dict(e.details)) for e in AuditLog(db).entries()]


def test_report_check_withdraw_and_the_history_stays(register: DocumentRegister,
                                                     database: Database) -> None:
    entry = register.report(" l898902c3 ", "uto", "p", "Stolen", ADMIN,
                            reference="UTO-PD 2026/118", note="reported at the consulate")
    assert (entry.document_number, entry.issuing_state, entry.document_type,
            entry.status, entry.reported_by, entry.active) == (
        "L898902C3", "UTO", "P", "stolen", "amir", True)
    hit = register.check_number("L898 902C3", "UTO")
    assert (hit.hit, hit.status, hit.document_type, hit.reported_at) == (
        True, "stolen", "P", entry.reported_at)
    assert not register.check_number("L898902C3", "AUS").hit  # another state's document
    miss = register.check_number("L898902C4", "UTO")
    assert (miss.hit, miss.status, miss.document_type, miss.reported_at) == (
        False, None, None, None)

    withdrawn = register.withdraw(entry.id, "found by its holder", ADMIN)
    assert not withdrawn.active and withdrawn.withdrawn_by == "amir"
    assert withdrawn.withdrawn_reason == "found by its holder"
    assert not register.check_number("L898902C3", "UTO").hit
    assert register.list() == [] and register.count() == 0
    assert register.list(active_only=False) == [withdrawn]
    # Reported again later: a new entry; the withdrawn one stays for history.
    again = register.report("L898902C3", "UTO", "P", "lost", ADMIN)
    assert again.id != entry.id and register.count(active_only=False) == 2
    assert register.withdraw(("UTO", "l898902c3"), "reported in error", ADMIN).id == again.id
    assert register.get(entry.id) == withdrawn

    assert actions(database) == [
        ("amir", "admin", "document.report",
         {"entry": entry.id, "document_number": "L898902C3", "issuing_state": "UTO",
          "document_type": "P", "status": "stolen", "reference": "UTO-PD 2026/118"}),
        ("amir", "admin", "document.withdraw",
         {"entry": entry.id, "document_number": "L898902C3", "issuing_state": "UTO",
          "status": "stolen", "reason": "found by its holder"}),
        ("amir", "admin", "document.report",
         {"entry": again.id, "document_number": "L898902C3", "issuing_state": "UTO",
          "document_type": "P", "status": "lost", "reference": None}),
        ("amir", "admin", "document.withdraw",
         {"entry": again.id, "document_number": "L898902C3", "issuing_state": "UTO",
          "status": "lost", "reason": "reported in error"}),
    ]
    assert AuditLog(database).verify().intact


@pytest.mark.parametrize("name", list(SPECIMENS))
def test_every_icao_specimen_mrz_is_checked_by_its_number_and_state(
        register: DocumentRegister, name: str) -> None:
    text, zone = SPECIMENS[name]
    assert not register.check_mrz(text).hit
    register.report(zone.document_number, zone.issuing_state, zone.document_code[0],
                    "revoked", ADMIN)
    check = register.check_mrz(text)
    assert (check.hit, check.status, check.document_number, check.issuing_state) == (
        True, "revoked", zone.document_number, "UTO")


def test_a_german_document_is_registered_under_d(register: DocumentRegister) -> None:
    zone = MachineReadableZone("TD1", "ID", "D", "T22000129", "MUSTERMANN", "ERIKA", "D",
                               "640812", "F", "310331")
    text = compose(zone)
    assert text.startswith("IDD<<T22000129")
    register.report("T22000129", "D<<", "I", "lost", ADMIN)
    assert register.list()[0].issuing_state == "D"
    assert register.check_mrz(text).hit and register.check_number("t22000129", "d").hit


def test_the_long_td1_number_is_the_whole_number(register: DocumentRegister) -> None:
    register.report("D23145890734", "UTO", "I", "stolen", ADMIN)
    assert register.check_mrz(TD1_LONG).hit
    assert not register.check_mrz(TD1).hit  # D23145890: its first nine characters only


@pytest.mark.parametrize(("text", "line", "position", "field"), [
    (TD3, 1, 9, "document_number"),
    (TD3, 1, 19, "birth_date"),
    (TD3, 1, 43, "composite"),
    (TD2, 1, 9, "document_number"),
    (TD1, 0, 14, "document_number"),
])
def test_a_wrong_check_digit_raises_mrz_error_naming_its_field(
        register: DocumentRegister, text: str, line: int, position: int, field: str) -> None:
    lines = text.split("\n")
    digit = lines[line][position]
    lines[line] = lines[line][:position] + str((int(digit) + 1) % 10) \
        + lines[line][position + 1:]
    with pytest.raises(MRZError) as caught:
        register.check_mrz("\n".join(lines))
    assert caught.value.field == field and "check digit" in caught.value.message


def test_a_document_is_registered_once_at_a_time(register: DocumentRegister,
                                                 database: Database) -> None:
    register.report("PA1234567", "AUS", "P", "lost", ADMIN)
    before = actions(database)
    with pytest.raises(DocumentConflict, match=r"^document_number: AUS PA1234567 is already "
                                               r"registered \(lost since "):
        register.report("pa 1234567", "aus", "P", "stolen", ADMIN)
    assert actions(database) == before
    # The database enforces it too (the partial unique index), whoever writes.
    with pytest.raises(IntegrityError), database.session() as s:
        s.add(RegisteredDocument(document_number="PA1234567", issuing_state="AUS",
                                 document_type="P", status="stolen", reported_at=utcnow(),
                                 reported_by="sql"))
    with database.session() as s:  # ...but not for a withdrawn entry
        s.add(RegisteredDocument(document_number="PA1234567", issuing_state="AUS",
                                 document_type="P", status="stolen", reported_at=utcnow(),
                                 reported_by="sql", withdrawn_at=utcnow(),
                                 withdrawn_by="sql", withdrawn_reason="history"))
    assert register.count() == 1 and register.count(active_only=False) == 2


def _report(**changes: object) -> Callable[[DocumentRegister], object]:
    args: dict[str, object] = {"document_number": "PA1234567", "issuing_state": "AUS",
                               "document_type": "P", "status": "lost", "actor": ADMIN}
    return lambda r: r.report(**{**args, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("call", "field", "message"), [
    (_report(document_number=""), "document_number", "must be 1-20 letters A-Z and digits"),
    (_report(document_number="PA-123"), "document_number", "'PA-123'"),
    (_report(document_number="A" * 21), "document_number", "1-20"),
    (_report(issuing_state="AU1"), "issuing_state", "'AU1' must be the ICAO code"),
    (_report(issuing_state="AUST"), "issuing_state", "1-3 letters"),
    (_report(issuing_state=""), "issuing_state", "ICAO code"),
    (_report(document_type="X"), "document_type", "'X' must be P (passport), I, A or C"),
    (_report(document_type="PP"), "document_type", "'PP'"),
    (_report(status="missing"), "status", "'missing' must be one of lost, stolen, revoked"),
    (_report(reference="R" * 65), "reference", "65 characters: at most 64"),
    (_report(note="n" * 501), "note", "at most 500"),
    (_report(actor=Principal("o1", "officer")), "role",
     "o1 acts as officer; only admin may report documents"),
    (lambda r: r.withdraw(1, "", ADMIN), "reason", "reason: required"),
    (lambda r: r.withdraw(1, "x" * 201, ADMIN), "reason", "1 to 200"),
    (lambda r: r.withdraw(999, "why", ADMIN), "entry", "no entry 999"),
    (lambda r: r.withdraw(2, "why", ADMIN), "entry", "entry 2 was withdrawn on"),
    (lambda r: r.withdraw(("AUS", "X9"), "why", ADMIN), "document_number",
     "AUS X9 has no active entry"),
    (lambda r: r.withdraw(("A-U", "X9"), "why", ADMIN), "issuing_state", "'A-U'"),
    (lambda r: r.withdraw("1", "why", ADMIN), "entry", "must be an entry id"),
    (lambda r: r.withdraw(1, "why", Principal("d", "dpo")), "role", "only admin may withdraw"),
    (lambda r: r.check_number("", "AUS"), "document_number", "1-20"),
    (lambda r: r.check_number("X1", "12"), "issuing_state", "'12'"),
    (lambda r: r.list(limit=0), "limit", "1 to 1000"),
    (lambda r: r.list(offset=-1), "offset", "0 or more"),
])
def test_every_refusal_names_its_field_and_writes_nothing(
        register: DocumentRegister, database: Database,
        call: Callable[[DocumentRegister], object], field: str, message: str) -> None:
    first = register.report("X1", "AUS", "P", "lost", ADMIN)
    second = register.report("X2", "AUS", "P", "lost", ADMIN)
    register.withdraw(second.id, "found", ADMIN)
    assert first.id == 1 and second.id == 2
    before = actions(database)
    with pytest.raises((DocumentError, NotPermitted)) as caught:
        call(register)
    assert caught.value.field == field  # type: ignore[union-attr]
    assert str(caught.value).startswith(f"{field}: ") and message in str(caught.value)
    assert actions(database) == before


def test_error_kinds_tell_an_endpoint_its_answer(register: DocumentRegister) -> None:
    with pytest.raises(UnknownEntry):
        register.withdraw(1, "why", ADMIN)
    register.report("X1", "AUS", "P", "lost", ADMIN)
    with pytest.raises(DocumentConflict):
        register.report("X1", "AUS", "V", "stolen", ADMIN)
    assert issubclass(DocumentError, ValueError)


def test_a_csv_import_is_all_or_nothing_with_each_refused_row_named(
        register: DocumentRegister, database: Database) -> None:
    register.report("PA1234567", "AUS", "P", "stolen", ADMIN)
    before = actions(database)
    csv = (HEADER
           + "B7654321,IDN,P,lost,,\n"                      # line 2: good
           + 'C1234,THA,I,stolen,TH-1,"a note, with a comma\n'
           + 'over two lines"\n'                            # lines 3-4: good
           + "pa1234567,aus,P,lost,,\n"                     # line 5: registered already
           + "\n"                                           # line 6: blank, skipped
           + "B7654321,IDN,V,revoked,,\n"                   # line 7: twice in the file
           + "bad!,A1,Q,gone,,\n"                           # line 8: four bad fields
           + "E1,MYS,P,lost,,,extra\n")                     # line 9: too many cells
    result = register.import_csv(io.StringIO(csv), ADMIN)
    assert result.imported == 0
    assert [(e.line, e.field) for e in result.errors] == [
        (5, "document_number"), (7, "document_number"), (8, "document_number"),
        (8, "issuing_state"), (8, "document_type"), (8, "status"), (9, "columns")]
    assert "already registered (stolen since" in result.errors[0].message
    assert str(result.errors[1]) == "line 7: document_number: IDN B7654321 is already on line 2"
    assert register.count() == 1 and actions(database) == before, "nothing was written"

    good = HEADER + "B7654321,IDN,P,lost,,\n" + 'C1234,THA,I,stolen,TH-1,"note"\n' \
        + "X 99<,d<<,c,Revoked,,\n"
    counted: list[int] = []
    result = register.import_csv(io.StringIO(good), ADMIN, progress=counted.append)
    assert (result.imported, result.errors, sum(counted)) == (3, (), 3)
    assert {(e.issuing_state, e.document_number, e.document_type, e.status, e.reference,
             e.note) for e in register.list()} == {
        ("AUS", "PA1234567", "P", "stolen", None, None),
        ("IDN", "B7654321", "P", "lost", None, None),
        ("THA", "C1234", "I", "stolen", "TH-1", "note"),
        ("D", "X99", "C", "revoked", None, None)}
    (_, _, action, details), = actions(database)[len(before):]
    assert action == "document.import" and details["imported"] == 3
    assert len(str(details["rows_sha256"])) == 64
    assert register.check_number("B7654321", "IDN").hit
    assert AuditLog(database).verify().intact


def test_an_import_needs_the_columns_and_an_admin(register: DocumentRegister) -> None:
    with pytest.raises(DocumentError, match=r"^columns: the file is empty"):
        register.import_csv(io.StringIO(""), ADMIN)
    with pytest.raises(DocumentError, match=r"^columns: missing status"):
        register.import_csv(io.StringIO("document_number,issuing_state,document_type\n"),
                            ADMIN)
    with pytest.raises(DocumentError, match=r"^columns: unknown 'state'; missing issuing_"):
        register.import_csv(io.StringIO("document_number,state,document_type,status\n"),
                            ADMIN)
    with pytest.raises(DocumentError, match="repeated status"):
        register.import_csv(io.StringIO(
            "document_number,issuing_state,document_type,status,status\n"), ADMIN)
    # A header alone, or any order and case of the columns, with a byte-order mark.
    assert register.import_csv(io.StringIO(HEADER), ADMIN).imported == 0
    rows = list(read_csv(io.StringIO("\ufeffStatus,Issuing_State,DOCUMENT_NUMBER,"
                                     "document_type\nlost,AUS,X1,P\n")))
    assert rows == [(2, {"status": "lost", "issuing_state": "AUS", "document_number": "X1",
                         "document_type": "P"})]
    with pytest.raises(NotPermitted, match="only admin may import"):
        register.bulk_import(rows, Principal("s", "supervisor"))
    assert register.bulk_import(rows, ADMIN).imported == 1
