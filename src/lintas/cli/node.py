"""`lintas node ...`: set up and run a member's national node."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lintas.cli.common import console, fail, friendly, setup_logging
from lintas.crypto import fingerprint, load_public, read_passphrase
from lintas.node import node_database
from lintas.node.hub_client import HubClient
from lintas.node.runtime import Node, init_node, rotate_node_keys
from lintas.protocol.members import member_kind
from lintas.storage import Database

if TYPE_CHECKING:
    from lintas.node.services import Services

app = typer.Typer(help="Set up and run a member's national node.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="LINTAS_NODE_DIR",
                                       help="Folder for the node's files (SQLite database, "
                                            "public-key file, API token).")]
DbOpt = Annotated[str | None, typer.Option("--db", envvar="LINTAS_NODE_DB",
                                           help="Database URL; default: sqlite in --data-dir.")]
DEFAULT_DIR = Path("lintas-node")


def _db_url(data_dir: Path, db: str | None) -> str:
    return db or f"sqlite:///{(data_dir / 'node.db').resolve()}"


def open_node_database(data_dir: Path, db: str | None) -> Database:
    """The node's database for a command that works on it (not `init`): refused with a
    clear error when there is none, or when it is not migrated to this release."""
    if db is None and not (data_dir / "node.db").is_file():
        fail(f"--data-dir: no node database at {data_dir / 'node.db'}; run `lintas node init` "
             "first, or give --db")
    database = node_database(_db_url(data_dir, db))
    database.require_current("node")
    return database


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by the owner only, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)


@app.command()
@friendly
def init(
    member: Annotated[str, typer.Option(help="This member's code, e.g. AUS or IOM.")],
    hub_url: Annotated[str, typer.Option(help="The hub's base URL.")],
    hub_fingerprint: Annotated[str | None, typer.Option(
        help="The hub key fingerprint, as given by the regional administrator. Without it "
             "you are shown the fingerprint and asked to confirm.")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (needs --hub-fingerprint).")]
    = False,
) -> None:
    """Create the node's keys, pin the hub key, and write the public-key file.

    Hand the public-key file to the regional administrator.

    Private keys never leave the node: they are sealed with the passphrase from
    LINTAS_NODE_PASSPHRASE_FILE (preferred) or LINTAS_NODE_PASSPHRASE.

    Example: lintas node init --member AUS --hub-url https://hub.example
    --hub-fingerprint "AB12 ..."
    """
    member_kind(member)
    passphrase = read_passphrase("LINTAS_NODE")
    client = HubClient(hub_url)
    try:
        info = client.hub_key()
    finally:
        client.close()
    hub_key = load_public(info["jwk"], "sig")
    shown = fingerprint(hub_key)
    if hub_fingerprint is not None:
        if "".join(hub_fingerprint.split()).upper() != shown.replace(" ", ""):
            fail(f"the hub at {hub_url} presents key {shown}, not the fingerprint you were "
                 "given; do not continue until the regional administrator confirms")
    elif yes:
        fail("--yes needs --hub-fingerprint: a hub key must be compared before it is pinned")
    else:
        console.print(f"hub key fingerprint: [bold]{shown}[/]")
        if not typer.confirm("Does it match the fingerprint given by the regional administrator?"):
            fail("not pinned; nothing written")
    data_dir.mkdir(parents=True, exist_ok=True)
    database = node_database(_db_url(data_dir, db))
    database.upgrade()
    result = init_node(database, member, hub_url, info["jwk"], passphrase)
    keys_file = data_dir / f"{member}.keys.json"
    keys_file.write_text(json.dumps(result.public_keys, indent=2) + "\n", encoding="utf-8")
    _write_private(data_dir / "api-token", result.api_token + "\n")
    console.print(f"[green]node {member} initialised[/]; hub key pinned ({shown})")
    console.print(f"public keys for the regional administrator: [bold]{keys_file}[/]")
    console.print(f"API token (also in {data_dir / 'api-token'}): {result.api_token}")


@app.command()
@friendly
def migrate(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """Bring an existing node's database up to this release's schema.

    Run it after an upgrade (`serve` refuses an out-of-date database). Safe to run twice.

    Example: lintas node migrate --data-dir /var/lib/lintas
    """
    if db is None and not (data_dir / "node.db").is_file():
        fail(f"--data-dir: no node database at {data_dir / 'node.db'}; for a new node run "
             "`lintas node init`")
    database = node_database(_db_url(data_dir, db))
    was_current = database.is_current()
    database.upgrade()
    console.print("[green]node database already up to date[/]" if was_current
                  else "[green]node database migrated[/] to this release's schema")


@app.command("rotate-key")
@friendly
def rotate_key(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """Generate new keys for this node.

    Hand the written file to the administrator for `lintas hub member rotate-key`.
    The node switches to them once the directory lists them.

    Example: lintas node rotate-key --data-dir /var/lib/lintas
    """
    database = node_database(_db_url(data_dir, db))
    database.require_current("node")
    doc = rotate_node_keys(database, read_passphrase("LINTAS_NODE"))
    out = data_dir / f"{doc['member']}.keys-{doc['keys'][0]['kid'][:8]}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    console.print(f"[green]new keys generated[/]; public keys: [bold]{out}[/]")


@app.command()
@friendly
def serve(
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address of the node's own API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8500,
    log_file: Annotated[Path | None, typer.Option()] = None,
    log_level: Annotated[str, typer.Option()] = "info",
    audit_head_every: Annotated[float, typer.Option(
        min=1, max=86400, envvar="LINTAS_AUDIT_HEAD_EVERY_S",
        help="Seconds between two publications of the audit chain head to the hub, which "
             "keeps them as a witness (only a head that moved is published).")] = 60.0,
) -> None:
    """Run the node: its REST API and its outbound loops to the hub.

    The REST API has its OpenAPI page at /docs; the loops are the outbox sender, the
    mailbox long-poll and the directory refresh.

    Example: lintas node serve --data-dir /var/lib/lintas --port 8500
    """
    import uvicorn

    from lintas.node.app import create_app

    setup_logging(log_level, log_file)
    database = node_database(_db_url(data_dir, db))
    database.require_current("node")
    node = Node(database, read_passphrase("LINTAS_NODE"))
    services = _open_services(node)
    console.print(f"node {node.member} listening on http://{host}:{port}; hub {node.hub_url}")
    uvicorn.run(create_app(services, audit_head_every=audit_head_every), host=host, port=port,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5)


def _open_services(node: Node) -> Services:
    """The node's parts, with the 1:N index built from the gallery before the API
    listens: a progress bar on a terminal, and a log line when done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from lintas.node.services import Services

    started = time.monotonic()
    with Progress("building the 1:N index", BarColumn(), MofNCompleteColumn(), "fingers",
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("index", total=None)
        services = Services.open(node, progress=lambda done, total: bar.update(
            task, completed=done, total=total))
    fingers = services.gallery.finger_count()
    message = f"1:N index of {fingers:,} fingers built in {time.monotonic() - started:.1f} s"
    logging.getLogger("lintas.node").info(message)
    console.print(message)
    return services
