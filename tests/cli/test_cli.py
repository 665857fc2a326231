"""The `lintas` command: operator errors are one clear line, never a traceback."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lintas.cli.main import app
from lintas.hub import hub_database, registry
from lintas.hub.app import create_app
from tests.conftest import PASSPHRASE, ServerThread

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of an error message: {result.exception!r}"
    )
    return result.exit_code, result.output


@pytest.fixture
def hub_env(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {"LINTAS_HUB_PASSPHRASE": PASSPHRASE, "LINTAS_NODE_PASSPHRASE": PASSPHRASE,
           "LINTAS_HUB_DB": db}
    code, out = run("hub", "init", env=env)
    assert code == 0, out
    yield db, env


def node_keys(tmp_path: Path, code: str, hub_db: str, env: dict[str, str]) -> Path:
    database = hub_database(hub_db)
    key = registry.load_hub_key(database, PASSPHRASE)
    with ServerThread(create_app(database, key)) as hub:
        fp = run("hub", "fingerprint", env=env)[1].strip()
        exit_code, out = run("node", "init", "--member", code, "--hub-url", hub.url,
                             "--hub-fingerprint", fp, "--data-dir", str(tmp_path / code),
                             "--yes", env=env)
    assert exit_code == 0, out
    return tmp_path / code / f"{code}.keys.json"


def test_init_without_a_passphrase_says_how_to_give_one(tmp_path: Path) -> None:
    code, out = run("hub", "init", "--db", f"sqlite:///{tmp_path / 'h.db'}", env={})
    assert code == 2 and "LINTAS_HUB_PASSPHRASE_FILE" in out


def test_commands_on_an_uninitialised_hub_say_to_run_init(tmp_path: Path) -> None:
    code, out = run("hub", "member", "list", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "lintas hub init" in out


def test_member_lifecycle(tmp_path: Path, hub_env: tuple[str, dict[str, str]]) -> None:
    db, env = hub_env
    keys = node_keys(tmp_path, "AUS", db, env)
    assert run("hub", "member", "add", "AUS", "--name", "Australia", "--keys", str(keys),
               env=env)[0] == 0
    code, out = run("hub", "member", "add", "AUS", "--name", "Australia", "--keys", str(keys),
                    env=env)
    assert code == 2 and "already a member" in out
    # The same public keys presented for another member are refused.
    stolen = tmp_path / "NZL.keys.json"
    stolen.write_text(keys.read_text().replace('"AUS"', '"NZL"'))
    code, out = run("hub", "member", "add", "NZL", "--name", "New Zealand", "--keys",
                    str(stolen), env=env)
    assert code == 2 and "already registered" in out
    assert run("hub", "member", "suspend", "AUS", "--reason", "audit", env=env)[0] == 0
    listed = json.loads(run("hub", "member", "list", "--json", env=env)[1])
    assert [(m["code"], m["status"], m["status_reason"]) for m in listed] == [
        ("AUS", "suspended", "audit")]
    assert run("hub", "member", "activate", "AUS", env=env)[0] == 0
    code, out = run("hub", "member", "activate", "AUS", env=env)
    assert code == 2 and "already active" in out
    keys2 = node_keys(tmp_path / "second", "AUS", db, env)
    code, out = run("hub", "member", "rotate-key", "AUS", "--keys", str(keys2),
                    "--overlap-hours", "1", env=env)
    assert code == 0, out
    listed = json.loads(run("hub", "member", "list", "--json", env=env)[1])
    assert sum(1 for k in listed[0]["keys"] if k["valid_until"]) == 2


def test_organisations_must_say_so(tmp_path: Path, hub_env: tuple[str, dict[str, str]]) -> None:
    db, env = hub_env
    keys = node_keys(tmp_path, "IOM", db, env)
    code, out = run("hub", "member", "add", "IOM", "--name", "IOM", "--keys", str(keys), env=env)
    assert code == 2 and "--organisation" in out
    code, out = run("hub", "member", "add", "IOM", "--name", "IOM", "--keys", str(keys),
                    "--organisation", env=env)
    assert code == 0, out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"member": "AUS"}', "expected"),
        ('{"member": "aus", "keys": []}', "member"),
        ('{"member": "AUS", "keys": [{"use": "sig", "kty": "OKP", "crv": "X25519", "x": "AA"}]}',
         "sig key"),
    ],
)
def test_bad_key_files_are_refused_with_the_reason(
    tmp_path: Path, hub_env: tuple[str, dict[str, str]], content: str, message: str
) -> None:
    _, env = hub_env
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out = run("hub", "member", "add", "AUS", "--name", "Australia", "--keys", str(bad),
                    env=env)
    assert code == 2 and message in out
    assert json.loads(run("hub", "member", "list", "--json", env=env)[1]) == []


def test_node_init_refuses_a_hub_with_another_key(
    tmp_path: Path, hub_env: tuple[str, dict[str, str]]
) -> None:
    db, env = hub_env
    database = hub_database(db)
    with ServerThread(create_app(database, registry.load_hub_key(database, PASSPHRASE))) as hub:
        code, out = run("node", "init", "--member", "AUS", "--hub-url", hub.url,
                        "--hub-fingerprint", "0000 1111", "--data-dir", str(tmp_path / "n"),
                        "--yes", env=env)
    assert code == 2 and "not the fingerprint" in out
    assert not (tmp_path / "n").exists(), "nothing may be written for an unconfirmed hub"


def test_node_init_writes_public_keys_and_a_private_token(
    tmp_path: Path, hub_env: tuple[str, dict[str, str]]
) -> None:
    db, env = hub_env
    keys = node_keys(tmp_path, "THA", db, env)
    doc = json.loads(keys.read_text())
    assert doc["member"] == "THA" and all("d" not in k for k in doc["keys"])
    token = tmp_path / "THA" / "api-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_node_init_with_an_unreachable_hub(tmp_path: Path) -> None:
    code, out = run("node", "init", "--member", "AUS", "--hub-url", "http://127.0.0.1:9",
                    "--data-dir", str(tmp_path / "n"), "--yes",
                    env={"LINTAS_NODE_PASSPHRASE": PASSPHRASE})
    assert code == 2 and "127.0.0.1:9" in out


def test_every_command_has_help_with_an_example() -> None:
    for args in (["hub", "init"], ["hub", "serve"], ["hub", "member", "add"],
                 ["hub", "member", "list"], ["hub", "member", "suspend"],
                 ["hub", "member", "rotate-key"], ["hub", "member", "activate"],
                 ["hub", "fingerprint"], ["node", "init"], ["node", "serve"],
                 ["node", "rotate-key"], ["demo"], ["version"]):
        code, out = run(*args, "--help")
        assert code == 0 and "Example" in out, args


def test_every_command_is_listed_with_a_one_line_summary() -> None:
    """A group's --help lists each command by the first paragraph of its help, line
    breaks kept (Typer's rich mode): that paragraph must be one line, or the listing
    breaks mid-sentence. Walks every command, so a new one is held to it too."""
    import inspect

    import typer.main

    def commands(cmd, path):  # type: ignore[no-untyped-def]
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, [*path, name])

    seen = 0
    for path, cmd in commands(typer.main.get_command(app), []):
        summary = inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0]
        assert summary and "\n" not in summary, (path, summary)
        seen += 1
    assert seen > 40
    code, out = run("--help")
    assert code == 0 and "Start a hub and three nodes (AUS, IDN, THA) on loopback" in out


def test_node_migrate_upgrades_an_older_database(tmp_path: Path,
                                                 hub_env: tuple[str, dict[str, str]]) -> None:
    """A node made by an earlier release (schema 0001) is refused by `serve`-style checks
    until `lintas node migrate` brings it up to date; the data it held survives."""
    from alembic import command
    from sqlalchemy import text

    from lintas.node import node_database

    hub_db, env = hub_env
    node_keys(tmp_path, "AUS", hub_db, env)
    database = node_database(f"sqlite:///{tmp_path / 'AUS' / 'node.db'}")
    cfg = database._alembic_config()
    with database.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "node_0001")
    assert not database.is_current()
    code, out = run("node", "rotate-key", "--data-dir", str(tmp_path / "AUS"), env=env)
    assert code == 2 and "lintas node migrate" in out
    code, out = run("node", "migrate", "--data-dir", str(tmp_path / "AUS"), env=env)
    assert code == 0 and "migrated" in out
    assert database.is_current()
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM node_keys")).scalar() == 2
    code, out = run("node", "migrate", "--data-dir", str(tmp_path / "AUS"), env=env)
    assert code == 0 and "already up to date" in out
    code, out = run("node", "migrate", "--data-dir", str(tmp_path / "nowhere"), env=env)
    assert code == 2 and "lintas node init" in out


def test_hub_migrate_is_safe_to_repeat(hub_env: tuple[str, dict[str, str]]) -> None:
    _, env = hub_env
    code, out = run("hub", "migrate", env=env)
    assert code == 0 and "already up to date" in out
