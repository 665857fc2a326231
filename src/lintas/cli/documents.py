"""`lintas documents ...`: the node's register of lost, stolen and revoked travel documents.

The commands open the node's database as `lintas node` does (--data-dir, or --db /
LINTAS_NODE_DB) and act as the local operator, recorded in the audit trail as
"cli:<OS user name>" in the admin role (see `lintas user`).
"""

from __future__ import annotations

import csv
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lintas.cli.common import console, fail, friendly
from lintas.cli.node import DEFAULT_DIR, DataDir, DbOpt, open_node_database
from lintas.cli.users import local_operator, user_errors
from lintas.documents.mrz import MRZError
from lintas.node.documents import (
    CSV_COLUMNS,
    STATUSES,
    DocumentCheck,
    DocumentError,
    DocumentRegister,
    read_csv,
)

app = typer.Typer(
    help="Report, withdraw, list and check lost, stolen and revoked travel documents in the "
         "node's register. These commands act as the local operator: the audit trail records "
         "'cli:<your OS user name>' in the admin role.",
    no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])
SHOWN_ERRORS = 50  # rejected rows listed by `import`; the rest are counted

Number = Annotated[str | None, typer.Option(
    "--number", help="The document number as printed (spaces and < are dropped).")]
State = Annotated[str | None, typer.Option(
    "--state", help="The issuing state's ICAO code as in the MRZ: AUS, IDN, D (Germany)...")]


def document_errors(func: F) -> F:
    """Register and MRZ errors as one clear line (the other known errors: `friendly`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DocumentError as exc:
            fail(str(exc))
        except MRZError as exc:
            fail(f"MRZ {exc.field}: {exc.message}")

    return wrapper  # type: ignore[return-value]


def _open(data_dir: Path, db: str | None) -> DocumentRegister:
    return DocumentRegister(open_node_database(data_dir, db))


def _when(moment: Any) -> str:
    return "" if moment is None else str(moment.strftime("%Y-%m-%d %H:%M"))


@app.command()
@friendly
@user_errors
@document_errors
def report(
    number: Annotated[str, typer.Argument(metavar="DOCUMENT_NUMBER",
                                          help="As printed; spaces and < are dropped.")],
    state: Annotated[str, typer.Option("--state", help="The issuing state's ICAO code as "
                                                       "in the MRZ (D for Germany).")],
    document_type: Annotated[str, typer.Option(
        "--type", help="P passport; I, A or C identity card; V visa.")],
    status: Annotated[str, typer.Option("--status", help=" | ".join(STATUSES))],
    reference: Annotated[str | None, typer.Option(
        "--reference", help="The national case reference (at most 64 characters).")] = None,
    note: Annotated[str | None, typer.Option(
        "--note", help="A note for the register's users (at most 500 characters).")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Register a document as lost, stolen or revoked.

    A document already registered is refused: withdraw its entry first.

    Example: lintas documents report PA1234567 --state AUS --type P --status stolen
    """
    entry = _open(data_dir, db).report(number, state, document_type, status,
                                       local_operator(), reference, note)
    console.print(f"[green]registered[/] entry {entry.id}: {entry.issuing_state} "
                  f"{entry.document_number} ({entry.document_type}) {entry.status}")


@app.command()
@friendly
@user_errors
@document_errors
def withdraw(
    reason: Annotated[str, typer.Option("--reason", help="Why (found, reported in error, "
                                                         "...): kept with the entry.")],
    entry: Annotated[int | None, typer.Argument(
        metavar="[ENTRY]", help="The entry's id (see `list`); or give --number and --state.",
        show_default=False)] = None,
    number: Number = None,
    state: State = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Withdraw a document's active entry (it stays in the register as history).

    Example: lintas documents withdraw --number PA1234567 --state AUS --reason "found by its holder"
    """
    if (entry is None) == (number is None and state is None):
        fail("ENTRY: give an entry id, or --number and --state, not both")
    if entry is None and (number is None or state is None):
        fail("--number and --state: give both")
    target: int | tuple[str, str] = entry if entry is not None else (state or "", number or "")
    done = _open(data_dir, db).withdraw(target, reason, local_operator())
    console.print(f"[green]withdrawn[/] entry {done.id}: {done.issuing_state} "
                  f"{done.document_number} ({done.withdrawn_reason})")


@app.command("list")
@friendly
@document_errors
def list_entries(
    all_entries: Annotated[bool, typer.Option(
        "--all", help="Withdrawn entries too (default: active ones only).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """List the register's entries, newest first.

    Example: lintas documents list --all --limit 20
    """
    register = _open(data_dir, db)
    entries = register.list(active_only=not all_entries, limit=limit, offset=offset)
    title = (f"{register.count()} active entries"
             + (f", {register.count(active_only=False)} in all" if all_entries else ""))
    table = Table(title=title)
    for name in ("id", "document", "type", "status"):
        table.add_column(name, no_wrap=True)  # identifiers are never cut
    for name in ("reported", "reference", "withdrawn"):
        table.add_column(name, overflow="fold")
    for e in entries:
        withdrawn = (f"{e.withdrawn_at:%Y-%m-%d} by {e.withdrawn_by}: {e.withdrawn_reason}"
                     if e.withdrawn_at else "")
        table.add_row(str(e.id), f"{e.issuing_state} {e.document_number}", e.document_type,
                      e.status, f"{e.reported_at:%Y-%m-%d} by {e.reported_by}",
                      e.reference or "", withdrawn)
    console.print(table)


def _verdict(check: DocumentCheck) -> None:
    document = f"{check.issuing_state} {check.document_number}"
    if check.hit:
        console.print(f"[bold red]HIT[/]: {document} is registered as {check.status} "
                      f"(type {check.document_type}, since {_when(check.reported_at)})")
    else:
        console.print(f"[green]no entry[/]: {document} is not in the register")


@app.command()
@friendly
@document_errors
def check(
    mrz: Annotated[str | None, typer.Option(
        "--mrz", help="The machine-readable zone, its lines separated by spaces, line "
                      "breaks or nothing; - reads it from standard input. Every check "
                      "digit is verified.")] = None,
    number: Number = None,
    state: State = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Is this document in the register? Give its MRZ, or its number and issuing state.

    Prints HIT with the status, or "no entry"; exits 0 either way.

    Example: lintas documents check --mrz - < scanned-mrz.txt
    """
    if (mrz is None) == (number is None and state is None):
        fail("give --mrz, or --number and --state")
    if mrz is None and (number is None or state is None):
        fail("--number and --state: give both")
    register = _open(data_dir, db)
    if mrz is not None:
        text = sys.stdin.read() if mrz == "-" else mrz
        _verdict(register.check_mrz("\n".join(text.split())))  # MRZ lines hold no spaces
    else:
        _verdict(register.check_number(number or "", state or ""))


@app.command("import")
@friendly
@user_errors
@document_errors
def import_csv(
    csv_file: Annotated[Path, typer.Argument(
        metavar="CSVFILE", exists=True, dir_okay=False, readable=True,
        help=f"UTF-8 CSV whose header names the columns {', '.join(CSV_COLUMNS)} (the last "
             "two may be left out).")],
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Register the documents of a CSV file, all or nothing.

    Every row is checked first; if any is refused, nothing is written and each refused
    row is listed with its line
    and field. Exits 1 then.

    Example: lintas documents import stolen-2026-11.csv --data-dir /var/lib/lintas
    """
    register = _open(data_dir, db)
    try:
        with csv_file.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(read_csv(fh))
    except UnicodeDecodeError as exc:
        fail(f"CSVFILE: {csv_file} is not UTF-8 text (byte {exc.start}); save it as "
             "UTF-8 CSV")
    except csv.Error as exc:
        fail(f"CSVFILE: {csv_file} is not a CSV file the reader understands: {exc}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("checked", total=len(rows))
        result = register.bulk_import(rows, local_operator(),
                                      lambda n: progress.advance(task, n))
    if not result.errors:
        console.print(f"[green]imported[/] {result.imported} entries from {csv_file.name}"
                      if result.imported else f"{csv_file.name} holds no rows: nothing to "
                                              "import")
        return
    rejected = {e.line for e in result.errors}
    table = Table("line", "field", "problem",
                  title=f"{len(rejected)} of {len(rows)} rows refused: nothing was imported")
    for error in result.errors[:SHOWN_ERRORS]:
        table.add_row(str(error.line), error.field, error.message)
    console.print(table)
    if len(result.errors) > SHOWN_ERRORS:
        console.print(f"... and {len(result.errors) - SHOWN_ERRORS} more problems")
    raise typer.Exit(1)
