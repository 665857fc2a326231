"""`lintas audit ...`: the node's hash-chained audit trail, from the command line.

The commands open the node's database as `lintas node` does (--data-dir, or --db /
LINTAS_NODE_DB).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lintas.cli.common import console, fail, friendly
from lintas.cli.node import DEFAULT_DIR, DataDir, DbOpt, open_node_database

if TYPE_CHECKING:
    from lintas.audit import Witness
    from lintas.node.audit import AuditLog
    from lintas.node.report import Report

app = typer.Typer(help="Verify and inspect the node's audit trail.", no_args_is_help=True)

_HEAD = re.compile(r"([0-9]{1,12}):([0-9a-f]{64})")

Expect = Annotated[list[str] | None, typer.Option(
    "--expect-head", metavar="SEQ:DIGEST",
    help="A chain head recorded elsewhere (the hub's witness, or a head you noted): the "
         "log must reach it and hold that digest at that entry. Repeatable.")]


def _open(data_dir: Path, db: str | None) -> AuditLog:
    from lintas.node.audit import AuditLog

    return AuditLog(open_node_database(data_dir, db))


Hub = Annotated[bool, typer.Option(
    "--hub", help="Also check every head the hub witnessed (needs the node passphrase, "
                  "as `lintas node serve` does, to sign the request). Only the witness can "
                  "reveal a trail cut short or rewritten from some entry on.")]


def _expected(expect_head: list[str] | None) -> list[Witness]:
    """The heads given with --expect-head."""
    from lintas.audit import Witness

    witnesses = []
    for text in expect_head or []:
        match = _HEAD.fullmatch(text.strip().lower())
        if match is None:
            fail(f"--expect-head: {text!r} is not SEQ:DIGEST (a number, a colon, 64 hex "
                 "digits)")
        else:
            witnesses.append(Witness(int(match[1]), match[2]))
    return witnesses


def _hub_heads(log: AuditLog) -> list[Witness]:
    """Every head the hub witnessed of this node's trail (--hub)."""
    from lintas.audit import Witness
    from lintas.crypto import read_passphrase
    from lintas.node.hub_client import HubClient
    from lintas.node.runtime import Node

    node = Node(log.db, read_passphrase("LINTAS_NODE"))
    with HubClient(node.hub_url, node.member, node.signing_key()) as client:
        witnessed = [Witness(seq, digest) for seq, digest in client.audit_heads()]
    console.print(f"the hub witnessed {len(witnessed)} head(s) of {node.member}'s trail")
    return witnessed


@app.command("verify")
@friendly
def verify_command(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None,
                   expect_head: Expect = None, hub: Hub = False) -> None:
    """Check every entry of the audit trail and the heads the hub witnessed.

    Checks each entry's digest, its link to the entry before, the numbering, and the
    heads the hub witnessed (--hub) or given with --expect-head.
    Names each edited, moved, deleted, rewritten or cut-off entry; exits 1 if there is
    any, 0 if the trail is intact.

    Example: lintas audit verify --data-dir /var/lib/lintas --hub
    """
    witnesses = _expected(expect_head)
    log = _open(data_dir, db)
    if hub:
        witnesses += _hub_heads(log)
    result = log.verify(witnesses)
    if result.intact:
        head = (f"head {result.head.seq}:{result.head.digest}" if result.head
                else "no entries yet")
        console.print(f"[green]intact[/]: {result.entries} entries, {head}")
        return
    table = Table("entry", "problem", "what it means")
    for problem in result.problems:
        table.add_row(str(problem.seq), problem.kind, problem.message)
    console.print(table)
    console.print(f"[bold red]{len(result.problems)} problem(s)[/] in {result.entries} entries")
    raise typer.Exit(1)


@app.command("head")
@friendly
def head_command(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """Print the chain head (SEQ:DIGEST of the last entry).

    Note it, or compare it with the hub's witness.

    Example: lintas audit head --data-dir /var/lib/lintas
    """
    head = _open(data_dir, db).head()
    print(f"{head.seq}:{head.digest}" if head else "0:" + "0" * 64)


@app.command("report")
@friendly
def report_command(
    agreement: Annotated[str | None, typer.Option(
        "--agreement", metavar="ID",
        help="One agreement; default: every agreement held in force in the period or "
             "used in it.")] = None,
    start: Annotated[str | None, typer.Option(
        "--from", metavar="YYYY-MM-DD",
        help="First day of the period (UTC); default: 29 days before --to.")] = None,
    end: Annotated[str | None, typer.Option(
        "--to", metavar="YYYY-MM-DD",
        help="Last day of the period (UTC), included; default: today.")] = None,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", metavar="FILE",
        help="Also write the figures as CSV (one row per agreement, side, metric and "
             "key; columns in docs/audit.md). Replaced atomically.")] = None,
    no_withheld: Annotated[bool, typer.Option(
        "--no-withheld", help="Leave out how many candidates a protection withheld (it "
                              "tells that protected records exist), for a report that "
                              "leaves the data-protection office.")] = False,
    allow_broken: Annotated[bool, typer.Option(
        "--allow-broken", help="Report even from a trail that does not verify, marked "
                               "as untrustworthy (default: refuse, exit 1).")] = False,
    expect_head: Expect = None,
    hub: Hub = False,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """The data-protection report of the node's checks, per agreement and side.

    Read from the audit trail (verified first): checks by query type and purpose, outcomes,
    step-2 requests and decisions, response times, quota use, and (for the requests
    we answered) candidates withheld by a protection. Exits 2 on a bad option, 1 when
    the trail is not intact.

    Example: lintas audit report --agreement AUS-IDN-2027-01 --from 2027-01-01
    --to 2027-03-31 --csv q1.csv
    """
    from lintas.node import report as r

    try:
        if start is None and end is None:
            first, last = r.default_period()
        else:
            last = r.parse_day(end, "to") if end is not None else r.default_period()[1]
            first = (r.parse_day(start, "from") if start is not None
                     else r.default_period(last)[0])
        if csv_file is not None and not csv_file.parent.is_dir():
            fail(f"--csv: the folder {csv_file.parent} does not exist")
        witnesses = _expected(expect_head)
        log = _open(data_dir, db)
        if hub:
            witnesses += _hub_heads(log)
        report = r.build_report(log.db, agreement, first, last, witnesses=witnesses,
                                allow_broken=allow_broken, sensitive=not no_withheld)
    except r.BrokenChain as exc:
        fail(exc.message, code=1)
        return
    except r.ReportError as exc:
        fail(f"--{exc.field}: {exc.message}")
        return
    _print_report(report)
    if csv_file is not None:
        tmp = csv_file.with_name(f".{csv_file.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                fh.write(r.to_csv(report))
            tmp.replace(csv_file)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            fail(f"--csv: cannot write {csv_file}: {exc.strerror or exc}")
        console.print(f"CSV written to {csv_file}")


def _print_report(report: Report) -> None:
    from lintas.node import report as r

    lines = r.summary_lines(report)
    console.print(lines[0], markup=False, highlight=False)
    style = "green" if report.chain.intact else "bold red"
    console.print(lines[1], style=style, markup=False, highlight=False)
    if not report.agreements:
        console.print("no agreement held or used in this period")
    for a in report.agreements:
        table = Table("figure", *(r.SIDE_LABELS[s.side] for s in a.sides),
                      title=f"{a.agreement} with {a.partner or '?'} "
                            f"({a.status or 'not held by this node'})",
                      title_justify="left")
        columns = [dict(r.figures(s)) for s in a.sides]
        labels = list(dict.fromkeys(label for s in a.sides for label, _ in r.figures(s)))
        for label in labels:
            table.add_row(label, *(c.get(label, "") for c in columns))
        if not a.sides:
            table.add_row("no checks either way")
        console.print(table)
