"""The `lintas` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lintas import __version__
from lintas.cli import audit, documents, gallery, hub, node, users

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
    """Start a hub and three nodes (AUS, IDN, THA) on loopback, onboard them, send
    messages both ways, show that the hub holds no readable payload, and stop.

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
