"""The `lintas` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lintas import __version__
from lintas.cli import agreements, audit, checks, documents, gallery, hub, node, users

app = typer.Typer(
    help="Lintas: a secure regional data exchange. A hub relays sealed envelopes between "
         "members' national nodes and never reads them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(hub.app, name="hub")
app.add_typer(node.app, name="node")
app.add_typer(gallery.app, name="gallery")
app.add_typer(audit.app, name="audit")
app.add_typer(users.app, name="user")
app.add_typer(documents.app, name="documents")
app.add_typer(agreements.app, name="agreement")
app.add_typer(checks.app, name="check")
app.add_typer(checks.protection_app, name="protection")


@app.command()
def demo(
    keep_running: Annotated[bool, typer.Option(
        help="After the scenario, leave the servers up and print their URLs and API tokens "
             "until Ctrl-C.")]
    = False,
    workdir: Annotated[Path | None, typer.Option(help="Keep the demo's files here "
                                                 "(default: a temporary folder, removed).")] = None,
    base_port: Annotated[int, typer.Option(min=1024, max=65000,
                                           help="Hub port; nodes use the next three.")] = 8400,
) -> None:
    """Start a hub and three nodes (AUS, IDN, THA) on loopback and play the exchange.

    It shows agreements negotiated, galleries enrolled from sample fingerprints, a hit and its
    step-2 disclosure, a no-hit, a partial disclosure, a refugee's protected record
    answered as a no-hit, a stolen passport found by its MRZ, a quota running out; then
    every audit chain verified against the hub's witness and the data-protection report.
    It ends by itself (exit 0 when every step went as expected).

    Example: lintas demo --keep-running
    """
    from lintas.cli.demo import run_demo

    raise typer.Exit(run_demo(keep_running=keep_running, workdir=workdir, base_port=base_port))


@app.command()
def version() -> None:
    """Print the version.

    Example: lintas version
    """
    print(__version__)
