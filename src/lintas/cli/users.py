"""`lintas user ...`: the node's users, their roles and API tokens, from the command line.

The commands open the node's database as `lintas node` does (--data-dir, or --db /
LINTAS_NODE_DB). Whoever can run them on the node's machine can read its database
anyway, so they act as a local operator with the admin role: the audit trail names them
"cli:<OS user name>", role admin.
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from lintas.cli.common import console, err_console, fail, friendly
from lintas.cli.node import DEFAULT_DIR, DataDir, DbOpt, open_node_database
from lintas.node.users import ROLES, Principal, UserError, Users

app = typer.Typer(
    help="Add users of the node's REST API, change their roles, issue new tokens and "
         "disable them. These commands act as the local operator: the audit trail records "
         "'cli:<your OS user name>' in the admin role.",
    no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])

Username = Annotated[str, typer.Argument(
    metavar="USERNAME", help="1-64 characters a-z 0-9 . _ - starting with a letter.")]
Role = Annotated[str, typer.Option(
    "--role", help=f"One of {', '.join(ROLES)}: an officer submits checks, a supervisor "
                   "reviews them and decides disclosures, the dpo reads the audit trail and "
                   "reports, an admin manages the gallery, agreements, users and document "
                   "register.")]


def local_operator() -> Principal:
    """The actor of a command typed on the node's machine: its OS user, as an admin."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name and no password-file entry (a container)
        name = "unknown"
    return Principal(f"cli:{name}", "admin")


def user_errors(func: F) -> F:
    """`UserError` as one clear line (the other known errors: `friendly`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _open(data_dir: Path, db: str | None) -> Users:
    return Users(open_node_database(data_dir, db))


def _show_token(username: str, token: str) -> None:
    err_console.print(f"[bold yellow]API token of {username}, shown only now[/] (the node "
                      "keeps only its SHA-256): hand it over by a safe channel.")
    print(token)


@app.command()
@friendly
@user_errors
def add(username: Username, role: Role, data_dir: DataDir = DEFAULT_DIR,
        db: DbOpt = None) -> None:
    """Add a user with a role, and print their API token (shown only this once).

    Example: lintas user add siti.rahma --role officer --data-dir /var/lib/lintas
    """
    record, token = _open(data_dir, db).add(username, role, local_operator())
    err_console.print(f"[green]added[/] {record.username} ({record.role})")
    _show_token(record.username, token)


@app.command("list")
@friendly
@user_errors
def list_users(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """List the users: username, role, whether active, when created (and why disabled).

    Example: lintas user list --data-dir /var/lib/lintas
    """
    users = _open(data_dir, db).list()
    table = Table("username", "role", "active", "created", "disabled",
                  title=f"{sum(u.active for u in users)} active users of {len(users)}")
    for u in users:
        disabled = (f"{u.disabled_at:%Y-%m-%d %H:%M}: {u.disabled_reason}"
                    if u.disabled_at else "")
        table.add_row(u.username, u.role, "yes" if u.active else "no",
                      f"{u.created_at:%Y-%m-%d %H:%M}", disabled)
    console.print(table)


@app.command("set-role")
@friendly
@user_errors
def set_role(username: Username, role: Role, data_dir: DataDir = DEFAULT_DIR,
             db: DbOpt = None) -> None:
    """Give an active user another role (the last active admin keeps theirs).

    Example: lintas user set-role siti.rahma --role supervisor
    """
    record = _open(data_dir, db).set_role(username, role, local_operator())
    console.print(f"[green]{record.username}[/] is now {record.role}")


@app.command("new-token")
@friendly
@user_errors
def new_token(username: Username, data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """Issue a new API token to an active user (lost or exposed token).

    The old one stops working at once. The new one is printed only this once.

    Example: lintas user new-token siti.rahma
    """
    record, token = _open(data_dir, db).new_token(username, local_operator())
    _show_token(record.username, token)


@app.command()
@friendly
@user_errors
def disable(
    username: Username,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the user and in "
                                                         "the audit trail).")],
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Disable a user for good.

    Their token is refused from now on; the name stays taken so that the audit trail
    keeps meaning one person. The last active admin cannot be
    disabled.

    Example: lintas user disable siti.rahma --reason "left the service"
    """
    record = _open(data_dir, db).disable(username, reason, local_operator())
    console.print(f"[green]disabled[/] {record.username} ({record.disabled_reason})")
