"""`lintas audit ...`: the node's hash-chained audit trail, from the command line.

The commands open the node's database as `lintas node` does (--data-dir, or --db /
LINTAS_NODE_DB).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lintas.cli.common import console, fail, friendly
from lintas.cli.node import DEFAULT_DIR, DataDir, DbOpt, open_node_database

app = typer.Typer(help="Verify and inspect the node's audit trail.", no_args_is_help=True)

_HEAD = re.compile(r"([0-9]{1,12}):([0-9a-f]{64})")

Expect = Annotated[list[str] | None, typer.Option(
    "--expect-head", metavar="SEQ:DIGEST",
    help="A chain head recorded elsewhere (the hub's witness, or a head you noted): the "
         "log must reach it and hold that digest at that entry. Repeatable.")]


def _open(data_dir: Path, db: str | None):  # type: ignore[no-untyped-def]
    from lintas.node.audit import AuditLog

    return AuditLog(open_node_database(data_dir, db))


Hub = Annotated[bool, typer.Option(
    "--hub", help="Also check every head the hub witnessed (needs the node passphrase, "
                  "as `lintas node serve` does, to sign the request). Only the witness can "
                  "reveal a trail cut short or rewritten from some entry on.")]


@app.command("verify")
@friendly
def verify_command(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None,
                   expect_head: Expect = None, hub: Hub = False) -> None:
    """Check every entry of the audit trail: its digest, its link to the entry before,
    the numbering, and the heads the hub witnessed (--hub) or given with --expect-head.
    Names each edited, moved, deleted, rewritten or cut-off entry; exits 1 if there is
    any, 0 if the trail is intact.

    Example: lintas audit verify --data-dir /var/lib/lintas --hub
    """
    from lintas.audit import Witness

    witnesses = []
    for text in expect_head or []:
        match = _HEAD.fullmatch(text.strip().lower())
        if match is None:
            fail(f"--expect-head: {text!r} is not SEQ:DIGEST (a number, a colon, 64 hex "
                 "digits)")
        else:
            witnesses.append(Witness(int(match[1]), match[2]))
    log = _open(data_dir, db)
    if hub:
        from lintas.crypto import read_passphrase
        from lintas.node.hub_client import HubClient
        from lintas.node.runtime import Node

        node = Node(log.db, read_passphrase("LINTAS_NODE"))
        with HubClient(node.hub_url, node.member, node.signing_key()) as client:
            witnessed = [Witness(seq, digest) for seq, digest in client.audit_heads()]
        witnesses += witnessed
        console.print(f"the hub witnessed {len(witnessed)} head(s) of {node.member}'s trail")
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
    """Print the chain head (SEQ:DIGEST of the last entry), to note or compare with the
    hub's witness.

    Example: lintas audit head --data-dir /var/lib/lintas
    """
    head = _open(data_dir, db).head()
    print(f"{head.seq}:{head.digest}" if head else "0:" + "0" * 64)
