"""`lintas hub ...`: run the regional hub and keep its member directory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lintas.cli.common import console, friendly, setup_logging
from lintas.crypto import fingerprint, load_public, read_passphrase
from lintas.hub import hub_database, registry
from lintas.protocol.keyfile import read_member_keys
from lintas.protocol.timefmt import format_time

app = typer.Typer(help="Run the regional hub: member directory and sealed-envelope relay.",
                  no_args_is_help=True)
member_app = typer.Typer(help="Onboard, list, suspend and re-key members.", no_args_is_help=True)
app.add_typer(member_app, name="member")

DEFAULT_DB = "sqlite:///lintas-hub/hub.db"
Db = Annotated[str, typer.Option("--db", envvar="LINTAS_HUB_DB",
                                 help="Hub database URL: sqlite:///PATH or postgresql://...")]


def _open(db_url: str):
    db = hub_database(db_url)
    db.require_current("hub")
    return db


@app.command()
@friendly
def init(db: Db = DEFAULT_DB) -> None:
    """Create the hub database and the hub's signing key.

    The key is sealed with the passphrase from LINTAS_HUB_PASSPHRASE_FILE (preferred) or
    LINTAS_HUB_PASSPHRASE. Give the printed fingerprint to every member out of band.

    Example: LINTAS_HUB_PASSPHRASE_FILE=/etc/lintas/hub.pass lintas hub init --db postgresql://hub@db/lintas
    """
    passphrase = read_passphrase("LINTAS_HUB")
    database = hub_database(db)
    database.upgrade()
    pair = registry.init_hub_key(database, passphrase)
    console.print("[green]hub initialised[/]")
    console.print(f"hub key fingerprint: [bold]{fingerprint(pair.public())}[/]", soft_wrap=True)


@app.command()
@friendly
def migrate(db: Db = DEFAULT_DB) -> None:
    """Bring an existing hub database up to this release's schema.

    Run it after an upgrade (`serve` refuses an out-of-date database). Safe to run twice.

    Example: lintas hub migrate --db postgresql://hub@db/lintas
    """
    database = hub_database(db)
    was_current = database.is_current()
    database.upgrade()
    console.print("[green]hub database already up to date[/]" if was_current
                  else "[green]hub database migrated[/] to this release's schema")


@app.command("fingerprint")
@friendly
def show_fingerprint(db: Db = DEFAULT_DB) -> None:
    """Print the hub key fingerprint (to read out to a member's administrator).

    Example: lintas hub fingerprint --db postgresql://hub@db/lintas
    """
    jwk = registry.hub_public_jwk(_open(db))
    print(fingerprint(load_public(jwk, "sig")))


@app.command()
@friendly
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8400,
    max_envelope_bytes: Annotated[int, typer.Option(min=1024, help="Largest envelope accepted.")]
    = 16 * 1024 * 1024,
    log_file: Annotated[Path | None, typer.Option(help="Write the metadata log here.")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Serve the directory and the relay (OpenAPI at /docs).

    Hub processes are stateless over one database: on PostgreSQL, run several behind a
    load balancer.

    Example: lintas hub serve --db postgresql://hub@db/lintas --host 0.0.0.0 --port 8400
    """
    import uvicorn

    from lintas.hub.app import create_app

    setup_logging(log_level, log_file)
    database = _open(db)
    hub_key = registry.load_hub_key(database, read_passphrase("LINTAS_HUB"))
    application = create_app(database, hub_key, max_envelope_bytes)
    console.print(f"hub listening on http://{host}:{port} (key {hub_key.kid[:12]}…)")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


@member_app.command("add")
@friendly
def member_add(
    code: Annotated[
        str, typer.Argument(help="ISO 3166-1 alpha-3 (AUS) or organisation code (IOM).")
    ],
    name: Annotated[str, typer.Option(help="Official name, e.g. 'Australia'.")],
    keys: Annotated[Path, typer.Option(help="Public-key file written by `lintas node init`.")],
    organisation: Annotated[bool, typer.Option(help="The code names an organisation.")] = False,
    db: Db = DEFAULT_DB,
) -> None:
    """Onboard a member with the public keys its node generated.

    Example: lintas hub member add AUS --name Australia --keys AUS.keys.json
    """
    key_file = read_member_keys(keys)
    if key_file.member != code:
        raise registry.RegistryError(f"{keys} holds keys for {key_file.member}, not {code}")
    view = registry.add_member(_open(db), key_file, name, organisation)
    console.print(f"[green]added[/] {view.code} ({view.name}, {view.kind}) with keys "
                  + ", ".join(k.kid[:12] + "…" for k in view.keys))


@member_app.command("list")
@friendly
def member_list(
    db: Db = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List members, their status and key validity.

    Example: lintas hub member list --json
    """
    views = registry.list_members(_open(db))
    if as_json:
        print(json.dumps([{"code": v.code, "name": v.name, "kind": v.kind, "status": v.status,
                           "status_reason": v.status_reason,
                           "keys": [{"kid": k.kid, "use": k.use,
                                     "valid_from": format_time(k.valid_from),
                                     "valid_until": format_time(k.valid_until)
                                     if k.valid_until else None} for k in v.keys]}
                          for v in views], indent=2))
        return
    table = Table("code", "name", "kind", "status", "keys (use kid valid)")
    for v in views:
        keys = "\n".join(f"{k.use} {k.kid[:12]}… from {format_time(k.valid_from)}"
                         + (f" until {format_time(k.valid_until)}" if k.valid_until else "")
                         for k in v.keys)
        status = v.status + (f" ({v.status_reason})" if v.status_reason else "")
        table.add_row(v.code, v.name, v.kind, status, keys)
    console.print(table)


@member_app.command("suspend")
@friendly
def member_suspend(
    code: str,
    reason: Annotated[str, typer.Option(help="Why; recorded with the status.")],
    db: Db = DEFAULT_DB,
) -> None:
    """Suspend a member: the hub refuses its envelopes and envelopes to it at once.

    Example: lintas hub member suspend THA --reason "key compromise reported"
    """
    registry.set_status(_open(db), code, "suspended", reason)
    console.print(f"[yellow]suspended[/] {code}: {reason}")


@member_app.command("activate")
@friendly
def member_activate(code: str, db: Db = DEFAULT_DB) -> None:
    """Lift a suspension.

    Example: lintas hub member activate THA
    """
    registry.set_status(_open(db), code, "active", None)
    console.print(f"[green]active[/] {code}")


@member_app.command("rotate-key")
@friendly
def member_rotate_key(
    code: str,
    keys: Annotated[Path, typer.Option(help="New public-key file from `lintas node rotate-key`.")],
    overlap_hours: Annotated[float, typer.Option(min=0, help="How long the old keys stay valid.")]
    = 168.0,
    db: Db = DEFAULT_DB,
) -> None:
    """Register a member's new keys, the old ones valid for an overlap.

    The old keys stay valid for the overlap so that envelopes already in flight are
    still delivered.

    Example: lintas hub member rotate-key AUS --keys AUS.keys-2.json --overlap-hours 72
    """
    key_file = read_member_keys(keys)
    if key_file.member != code:
        raise registry.RegistryError(f"{keys} holds keys for {key_file.member}, not {code}")
    view = registry.rotate_keys(_open(db), key_file, timedelta(hours=overlap_hours))
    console.print(f"[green]rotated[/] {code}: now {len(view.keys)} keys on record")
