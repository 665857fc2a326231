"""The node's register of lost, stolen and revoked travel documents, and checks against it.

    DocumentRegister(db)
      .report(document_number, issuing_state, document_type, status, actor,
              reference=None, note=None)           -> RegisterEntry
      .withdraw(entry, reason, actor)              -> RegisterEntry   (entry: id, or
                                                                       (issuing_state, number))
      .get(entry_id)                               -> RegisterEntry | None
      .list(active_only=True, limit=50, offset=0)  -> [RegisterEntry], newest first
      .count(active_only=True)                     -> int
      .check_number(document_number, issuing_state) -> DocumentCheck
      .check_mrz(mrz_text)                         -> DocumentCheck
      .bulk_import(rows, actor, progress=None)     -> ImportResult    (all or nothing)
      .import_csv(lines, actor, progress=None)     -> ImportResult    (read_csv + bulk_import)

A document is known by its issuing state and number as the MRZ prints them: the number
upper-case without spaces or fillers (1-20 of A-Z 0-9: a TD1 card's number may be longer
than the nine characters of its number field), the state as its ICAO code without
fillers (Germany's `D<<` is "D"). Its type is the first letter of the MRZ document code:
P passport; I, A or C identity card; V visa. Its status is lost, stolen or revoked.

At most one entry per document is active; a withdrawn entry (found, or reported in
error) stays, with who withdrew it, when and why, so the register keeps its history.

Reporting, withdrawing and importing are for admins (`NotPermitted` otherwise), and each
commits with its audit entry (`document.report`, `document.withdraw`, `document.import`)
or not at all. The register holds no personal data but the document's identifiers, so
the entries name them. Checks only read: the audit entry of a check made for a partner
is written by the exchange workflow that answers it.

Errors are `DocumentError(field, message)`, the text starting with the field at fault;
`UnknownEntry` (404) and `DocumentConflict` (409) tell a REST endpoint its answer, a
plain `DocumentError` is bad input (400). An MRZ that fails to parse raises
`lintas.documents.mrz.MRZError`, which names its field the same way.
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lintas.documents.mrz import parse
from lintas.node.audit import AuditLog
from lintas.node.models import RegisteredDocument
from lintas.node.users import Principal, require_role
from lintas.storage import Database, utcnow

STATUSES = ("lost", "stolen", "revoked")
DOCUMENT_TYPES = {"P": "passport", "I": "identity card", "A": "identity card",
                  "C": "identity card", "V": "visa"}
CSV_COLUMNS = ("document_number", "issuing_state", "document_type", "status", "reference",
               "note")
REQUIRED_COLUMNS = CSV_COLUMNS[:4]
MAX_NUMBER = 20
MAX_REFERENCE = 64
MAX_NOTE = 500
MAX_REASON = 200
MAX_LIST = 1000
_LOOKUP_CHUNK = 500

_NUMBER = re.compile(r"[A-Z0-9]{1,20}")
_STATE = re.compile(r"[A-Z]{1,3}")

Row = Mapping[str, str | None]
Progress = Callable[[int], None]  # called with how many more rows were checked


class DocumentError(ValueError):
    """A request about the register that is refused; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownEntry(DocumentError):
    """No such entry (or no active entry for that document)."""


class DocumentConflict(DocumentError):
    """The register's state forbids it: already registered, already withdrawn."""


@dataclass(frozen=True)
class RegisterEntry:
    id: int
    document_number: str
    issuing_state: str
    document_type: str
    status: str
    reported_at: datetime
    reported_by: str
    reference: str | None
    note: str | None
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    withdrawn_reason: str | None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


@dataclass(frozen=True)
class DocumentCheck:
    """The answer to "is this document registered?". `hit` is True when it has an active
    entry; then `status`, `document_type` and `reported_at` are that entry's (None
    otherwise). `document_number` and `issuing_state` are the document as looked up."""

    hit: bool
    status: str | None
    document_type: str | None
    reported_at: datetime | None
    document_number: str
    issuing_state: str


@dataclass(frozen=True)
class RowError:
    """A refused row of an import: its line in the file and the field at fault."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """`imported` entries were written, or none (0) when any row was refused."""

    imported: int
    errors: tuple[RowError, ...]


# --- the fields ---------------------------------------------------------------------------

def normalise_number(value: str) -> str:
    """A document number as the register keeps it: upper-case, spaces and `<` removed."""
    text = re.sub(r"[\s<]", "", value).upper() if isinstance(value, str) else ""
    if not _NUMBER.fullmatch(text):
        raise DocumentError("document_number", f"{value!r} must be 1-{MAX_NUMBER} letters "
                                               "A-Z and digits (spaces and < are dropped)")
    return text


def normalise_state(value: str) -> str:
    """An issuing state's ICAO code without fillers: "D<<" is "D" (Germany)."""
    text = value.strip().upper().rstrip("<") if isinstance(value, str) else ""
    if not _STATE.fullmatch(text):
        raise DocumentError("issuing_state", f"{value!r} must be the ICAO code of the "
                                             "issuing state, 1-3 letters as in the MRZ "
                                             "(e.g. AUS, or D for Germany)")
    return text


def normalise_type(value: str) -> str:
    text = value.strip().upper() if isinstance(value, str) else ""
    if text not in DOCUMENT_TYPES:
        raise DocumentError("document_type", f"{value!r} must be P (passport), I, A or C "
                                             "(identity card) or V (visa)")
    return text


def check_status(value: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in STATUSES:
        raise DocumentError("status", f"{value!r} must be one of {', '.join(STATUSES)}")
    return text


def _optional(field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DocumentError(field, "must be text")
    text = value.strip()
    if len(text) > limit:
        raise DocumentError(field, f"{len(text)} characters: at most {limit}")
    return text or None


def _reason(value: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_REASON:
        raise DocumentError("reason", f"required: 1 to {MAX_REASON} characters saying why")
    return text


@dataclass(frozen=True)
class _Fields:
    document_number: str
    issuing_state: str
    document_type: str
    status: str
    reference: str | None
    note: str | None


def _fields(document_number: str, issuing_state: str, document_type: str, status: str,
            reference: str | None, note: str | None) -> tuple[_Fields | None,
                                                              builtins.list[DocumentError]]:
    """Every field checked, every error kept (an import reports them all at once)."""
    checks: dict[str, Callable[[], str | None]] = {
        "document_number": lambda: normalise_number(document_number),
        "issuing_state": lambda: normalise_state(issuing_state),
        "document_type": lambda: normalise_type(document_type),
        "status": lambda: check_status(status),
        "reference": lambda: _optional("reference", reference, MAX_REFERENCE),
        "note": lambda: _optional("note", note, MAX_NOTE),
    }
    errors: builtins.list[DocumentError] = []
    values: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            values[name] = check()
        except DocumentError as exc:
            errors.append(exc)
    return (None, errors) if errors else (_Fields(**values), [])


def _entry(row: RegisteredDocument) -> RegisterEntry:
    return RegisterEntry(row.id, row.document_number, row.issuing_state, row.document_type,
                         row.status, row.reported_at, row.reported_by, row.reference,
                         row.note, row.withdrawn_at, row.withdrawn_by, row.withdrawn_reason)


def _active(state: str, number: str) -> Select[RegisteredDocument]:
    return select(RegisteredDocument).where(
        RegisteredDocument.issuing_state == state,
        RegisteredDocument.document_number == number,
        RegisteredDocument.withdrawn_at.is_(None))


def _registered(fields: _Fields, status: str, reported_at: datetime) -> str:
    return (f"{fields.issuing_state} {fields.document_number} is already registered "
            f"({status} since {reported_at:%Y-%m-%d}): withdraw that entry first to "
            "change it")


# --- CSV ----------------------------------------------------------------------------------

def read_csv(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(line number, row) for each row of a CSV file whose header names the columns
    (`CSV_COLUMNS`, in any order; reference and note may be left out). A header that does
    not fit raises `DocumentError` on the field "columns"."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise DocumentError("columns", "the file is empty: its first line must name the "
                                       f"columns {', '.join(CSV_COLUMNS)}")
    names = [name.lstrip("\ufeff").strip().lower() for name in header]
    unknown = [n for n in names if n not in CSV_COLUMNS]
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or twice:
        problems = ([f"unknown {', '.join(map(repr, unknown))}"] if unknown else []) + \
                   ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"repeated {', '.join(twice)}"] if twice else [])
        raise DocumentError("columns", f"{'; '.join(problems)} (the header line names "
                                       f"{', '.join(CSV_COLUMNS)}; the last two may be "
                                       "left out)")
    start = reader.line_num + 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            padded = cells + [""] * (len(names) - len(cells))
            row: dict[str, str | None] = dict(zip(names, padded, strict=False))
            if len(cells) > len(names):
                row[""] = ",".join(cells[len(names):])  # reported as too many cells
            yield start, row
        start = reader.line_num + 1


# --- the register ---------------------------------------------------------------------------

class DocumentRegister:
    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit or AuditLog(db)

    # --- checks (read-only) -----------------------------------------------------------------

    def check_number(self, document_number: str, issuing_state: str) -> DocumentCheck:
        """Is this document actively registered? Its number and state are normalised (and
        refused with `DocumentError` when they cannot be a document's)."""
        number, state = normalise_number(document_number), normalise_state(issuing_state)
        with self.db.session() as s:
            row = s.scalars(_active(state, number)).one_or_none()
            if row is None:
                return DocumentCheck(False, None, None, None, number, state)
            return DocumentCheck(True, row.status, row.document_type, row.reported_at,
                                 number, state)

    def check_mrz(self, mrz_text: str) -> DocumentCheck:
        """Parse an MRZ, every check digit verified (`MRZError` naming the field if any
        fails), and check its document number and issuing state."""
        zone = parse(mrz_text)
        return self.check_number(zone.document_number, zone.issuing_state)

    # --- reading ----------------------------------------------------------------------------

    def get(self, entry_id: int) -> RegisterEntry | None:
        with self.db.session() as s:
            row = s.get(RegisteredDocument, entry_id)
            return None if row is None else _entry(row)

    def list(self, active_only: bool = True, limit: int = 50,
             offset: int = 0) -> builtins.list[RegisterEntry]:
        """Entries, newest report first; withdrawn ones too unless `active_only`."""
        if not 1 <= limit <= MAX_LIST:
            raise DocumentError("limit", f"{limit}: 1 to {MAX_LIST}")
        if offset < 0:
            raise DocumentError("offset", f"{offset}: 0 or more")
        query = select(RegisteredDocument)
        if active_only:
            query = query.where(RegisteredDocument.withdrawn_at.is_(None))
        query = query.order_by(RegisteredDocument.reported_at.desc(),
                               RegisteredDocument.id.desc()).limit(limit).offset(offset)
        with self.db.session() as s:
            return [_entry(row) for row in s.scalars(query)]

    def count(self, active_only: bool = True) -> int:
        query = select(func.count()).select_from(RegisteredDocument)
        if active_only:
            query = query.where(RegisteredDocument.withdrawn_at.is_(None))
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    # --- changing ---------------------------------------------------------------------------

    def report(self, document_number: str, issuing_state: str, document_type: str,
               status: str, actor: Principal, reference: str | None = None,
               note: str | None = None) -> RegisterEntry:
        """Register a document as lost, stolen or revoked. A document already actively
        registered is refused (`DocumentConflict`); withdraw that entry first."""
        require_role(actor, "admin", to="report documents to the register")
        fields, errors = _fields(document_number, issuing_state, document_type, status,
                                 reference, note)
        if fields is None:
            raise errors[0]
        try:
            with self.db.session() as s:
                existing = s.scalars(_active(fields.issuing_state,
                                             fields.document_number)).one_or_none()
                if existing is not None:
                    raise DocumentConflict("document_number",
                                           _registered(fields, existing.status,
                                                       existing.reported_at))
                row = RegisteredDocument(**vars(fields), reported_at=utcnow(),
                                         reported_by=actor.username)
                s.add(row)
                s.flush()
                self._audit(s, actor, "document.report", entry=row.id,
                            document_number=row.document_number,
                            issuing_state=row.issuing_state,
                            document_type=row.document_type, status=row.status,
                            reference=row.reference)
                return _entry(row)
        except IntegrityError:  # registered by another process meanwhile
            raise DocumentConflict("document_number", f"{fields.issuing_state} "
                                   f"{fields.document_number} is already registered") from None

    def withdraw(self, entry: int | tuple[str, str], reason: str,
                 actor: Principal) -> RegisterEntry:
        """Withdraw an active entry, given by its id or as (issuing_state,
        document_number); it stays in the register as history."""
        require_role(actor, "admin", to="withdraw documents from the register")
        reason = _reason(reason)
        with self.db.session() as s:
            row = self._find(s, entry)
            now = utcnow()
            row.withdrawn_at, row.withdrawn_by, row.withdrawn_reason = (
                now, actor.username, reason)
            self._audit(s, actor, "document.withdraw", entry=row.id,
                        document_number=row.document_number,
                        issuing_state=row.issuing_state, status=row.status, reason=reason)
            return _entry(row)

    def bulk_import(self, rows: Iterable[tuple[int, Row]], actor: Principal,
                    progress: Progress | None = None) -> ImportResult:
        """Register many documents at once, all or nothing: every row (line number, then
        the columns of `CSV_COLUMNS` by name) is checked, against the register and the
        rows before it, before anything is written; if any is refused, nothing is written
        and every refusal is returned with its line and field. One audit entry records
        the import: the count and the SHA-256 of the rows as imported."""
        require_role(actor, "admin", to="import documents to the register")
        now = utcnow()
        checked: builtins.list[tuple[int, _Fields]] = []
        errors: builtins.list[RowError] = []
        seen: dict[tuple[str, str], int] = {}
        pending = 0
        for line, row in rows:
            errors += self._check_row(line, row, checked, seen)
            pending += 1
            if progress is not None and pending == 1000:
                progress(pending)
                pending = 0
        if progress is not None and pending:
            progress(pending)
        if not checked and not errors:
            return ImportResult(0, ())
        try:
            with self.db.session() as s:
                errors += self._registered_already(s, checked)
                if errors:  # nothing was written: the transaction only read
                    return ImportResult(0, tuple(sorted(errors, key=lambda e: e.line)))
                values = [{**vars(f), "reported_at": now, "reported_by": actor.username}
                          for _, f in checked]
                s.execute(insert(RegisteredDocument), values)
                digest = hashlib.sha256(json.dumps(
                    [vars(f) for _, f in checked], separators=(",", ":")).encode()).hexdigest()
                self._audit(s, actor, "document.import", imported=len(values),
                            rows_sha256=digest)
        except IntegrityError:
            raise DocumentConflict("document_number", "a document of the file was registered "
                                   "by someone else meanwhile; nothing was imported: run the "
                                   "import again to see which") from None
        return ImportResult(len(checked), ())

    def import_csv(self, lines: Iterable[str], actor: Principal,
                   progress: Progress | None = None) -> ImportResult:
        """`bulk_import` of a CSV file's lines (see `read_csv`)."""
        return self.bulk_import(read_csv(lines), actor, progress)

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _check_row(line: int, row: Row, checked: builtins.list[tuple[int, _Fields]],
                   seen: dict[tuple[str, str], int]) -> builtins.list[RowError]:
        if row.get(""):
            return [RowError(line, "columns", f"more cells than the {len(row) - 1} columns "
                                              "of the header")]
        fields, problems = _fields(row.get("document_number") or "",
                                   row.get("issuing_state") or "",
                                   row.get("document_type") or "", row.get("status") or "",
                                   row.get("reference"), row.get("note"))
        if fields is None:
            return [RowError(line, p.field, p.message) for p in problems]
        key = (fields.issuing_state, fields.document_number)
        if key in seen:
            return [RowError(line, "document_number",
                             f"{key[0]} {key[1]} is already on line {seen[key]}")]
        seen[key] = line
        checked.append((line, fields))
        return []

    @staticmethod
    def _registered_already(s: Session, checked: builtins.list[tuple[int, _Fields]]
                            ) -> builtins.list[RowError]:
        errors = []
        for start in range(0, len(checked), _LOOKUP_CHUNK):
            chunk = checked[start:start + _LOOKUP_CHUNK]
            found = {(r.issuing_state, r.document_number): (r.status, r.reported_at)
                     for r in s.execute(
                         select(RegisteredDocument.issuing_state,
                                RegisteredDocument.document_number,
                                RegisteredDocument.status, RegisteredDocument.reported_at)
                         .where(RegisteredDocument.withdrawn_at.is_(None),
                                RegisteredDocument.document_number.in_(
                                    {f.document_number for _, f in chunk})))}
            for line, f in chunk:
                known = found.get((f.issuing_state, f.document_number))
                if known is not None:
                    errors.append(RowError(line, "document_number", _registered(f, *known)))
        return errors

    @staticmethod
    def _find(s: Session, entry: int | tuple[str, str]) -> RegisteredDocument:
        if isinstance(entry, tuple):
            state, number = normalise_state(entry[0]), normalise_number(entry[1])
            row = s.scalars(_active(state, number).with_for_update()).one_or_none()
            if row is None:
                raise UnknownEntry("document_number", f"{state} {number} has no active entry")
            return row
        if isinstance(entry, bool) or not isinstance(entry, int):
            raise DocumentError("entry", f"{entry!r} must be an entry id or (issuing_state, "
                                         "document_number)")
        found = s.scalars(select(RegisteredDocument).where(RegisteredDocument.id == entry)
                          .with_for_update()).one_or_none()
        if found is None:
            raise UnknownEntry("entry", f"no entry {entry}")
        if found.withdrawn_at is not None:
            raise DocumentConflict("entry", f"entry {entry} was withdrawn on "
                                            f"{found.withdrawn_at:%Y-%m-%d} by "
                                            f"{found.withdrawn_by}")
        return found

    def _audit(self, s: Session, actor: Principal, action: str,
               **details: str | int | None) -> None:
        self.audit.record(s, actor.username, actor.role, action, "ok", details=details)
