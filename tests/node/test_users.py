"""The node's users (SQLite and PostgreSQL): tokens that work until replaced or disabled,
the last admin kept, every refusal naming its field, one audit entry per change, and the
single API token of earlier releases carried forward by the migration."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select

from lintas.crypto import generate
from lintas.node import node_database
from lintas.node.audit import AuditLog
from lintas.node.models import Setting
from lintas.node.runtime import Node, init_node
from lintas.node.users import (
    ROLES,
    NotPermitted,
    Principal,
    UnknownUser,
    UserConflict,
    UserError,
    Users,
)
from lintas.storage import Database
from tests.conftest import PASSPHRASE

ADMIN = Principal("cli:operator", "admin")


@pytest.fixture
def database(backend: str, new_db_url: Callable[[str], str]) -> Database:
    db = node_database(new_db_url(backend))
    db.upgrade()
    return db


def entries(db: Database) -> list[tuple[str, str, str, dict[str, object]]]:
    return [(e.actor, e.role, e.action, dict(e.details)) for e in AuditLog(db).entries()]


def test_roles_are_the_four_in_order() -> None:
    assert ROLES == ("officer", "supervisor", "dpo", "admin")


def test_add_list_role_token_disable_each_with_one_audit_entry(database: Database) -> None:
    users = Users(database)
    record, token = users.add("siti.rahma", "officer", ADMIN)
    assert (record.username, record.role, record.active) == ("siti.rahma", "officer", True)
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert users.authenticate(token) == Principal("siti.rahma", "officer")
    users.add("admin", "admin", ADMIN)
    assert [(u.username, u.role) for u in users.list()] == [("admin", "admin"),
                                                            ("siti.rahma", "officer")]

    assert users.set_role("siti.rahma", "supervisor", ADMIN).role == "supervisor"
    assert users.authenticate(token) == Principal("siti.rahma", "supervisor")

    record, fresh = users.new_token("siti.rahma", ADMIN)
    assert fresh != token
    assert users.authenticate(token) is None, "the old token stops working at once"
    assert users.authenticate(fresh) == Principal("siti.rahma", "supervisor")

    record = users.disable("siti.rahma", "left the service", ADMIN)
    assert not record.active and record.disabled_reason == "left the service"
    assert record.disabled_at is not None
    assert users.authenticate(fresh) is None, "a disabled user's token is refused"
    assert users.get("siti.rahma") == record

    assert entries(database) == [
        ("cli:operator", "admin", "user.add", {"username": "siti.rahma", "role": "officer"}),
        ("cli:operator", "admin", "user.add", {"username": "admin", "role": "admin"}),
        ("cli:operator", "admin", "user.role",
         {"username": "siti.rahma", "role": "supervisor", "previous_role": "officer"}),
        ("cli:operator", "admin", "user.token", {"username": "siti.rahma"}),
        ("cli:operator", "admin", "user.disable",
         {"username": "siti.rahma", "role": "supervisor", "reason": "left the service"}),
    ]
    assert AuditLog(database).verify().intact
    # The token is never stored, only its digest.
    with database.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM users"))
    assert fresh not in dump and hashlib.sha256(fresh.encode()).hexdigest() in dump


def test_unknown_and_malformed_tokens_authenticate_no_one(database: Database) -> None:
    users = Users(database)
    _, token = users.add("officer1", "officer", ADMIN)
    for wrong in ("", token[:-1], token + "x", token.upper(), "x" * 100_000,
                  secrets.token_urlsafe(32)):
        assert users.authenticate(wrong) is None


def test_the_last_active_admin_is_never_demoted_nor_disabled(database: Database) -> None:
    users = Users(database)
    users.add("admin", "admin", ADMIN)
    before = len(entries(database))
    with pytest.raises(UserConflict, match="username: 'admin' is the last active admin"):
        users.set_role("admin", "officer", ADMIN)
    with pytest.raises(UserConflict, match="last active admin and cannot be disabled"):
        users.disable("admin", "test", ADMIN)
    users.add("deputy", "admin", ADMIN)
    assert users.set_role("admin", "dpo", ADMIN).role == "dpo"  # another admin remains
    with pytest.raises(UserConflict, match="'deputy' is the last active admin"):
        users.disable("deputy", "test", ADMIN)
    # A disabled admin does not count: with 'deputy' disabled 'boss' would be the last.
    users.add("boss", "admin", ADMIN)
    users.disable("deputy", "moved on", ADMIN)
    with pytest.raises(UserConflict, match="'boss' is the last active admin"):
        users.set_role("boss", "officer", ADMIN)
    assert len(entries(database)) == before + 4  # refusals wrote nothing
    assert AuditLog(database).verify().intact


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
        backend: str, new_db_url: Callable[[str], str]) -> None:
    url = new_db_url(backend)
    setup = node_database(url)
    setup.upgrade()
    for _ in range(5):
        with setup.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM users")
        Users(setup).add("ana", "admin", ADMIN)
        Users(setup).add("ben", "admin", ADMIN)
        # On PostgreSQL, as two processes would: each its own Database (and pool). SQLite
        # takes one writer at a time, in turns within a process.
        pair = ([Users(node_database(url)), Users(node_database(url))]
                if backend == "postgresql" else [Users(setup), Users(setup)])
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def demote(users: Users, username: str, barrier: threading.Barrier,
                   outcomes: list[str]) -> None:
            barrier.wait()
            try:
                users.set_role(username, "officer", ADMIN)
                outcomes.append("demoted")
            except UserConflict:
                outcomes.append("refused")

        threads = [threading.Thread(target=demote, args=(pair[0], "ana", barrier, outcomes)),
                   threading.Thread(target=demote, args=(pair[1], "ben", barrier, outcomes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["demoted", "refused"]
        assert [u.role for u in Users(setup).list()].count("admin") == 1
        if backend == "postgresql":
            for users in pair:
                users.db.dispose()
    assert AuditLog(setup).verify().intact


@pytest.mark.parametrize(("call", "field", "message"), [
    (lambda u: u.add("Bob", "officer", ADMIN), "username",
     "username: 'Bob' must be 1-64 characters a-z 0-9 . _ - starting with a letter"),
    (lambda u: u.add("", "officer", ADMIN), "username", "username: '' must be"),
    (lambda u: u.add("1st", "officer", ADMIN), "username", "starting with a letter"),
    (lambda u: u.add("a" * 65, "officer", ADMIN), "username", "1-64 characters"),
    (lambda u: u.add("siti rahma", "officer", ADMIN), "username", "'siti rahma'"),
    (lambda u: u.add("siti", "root", ADMIN), "role",
     "role: 'root' must be one of officer, supervisor, dpo, admin"),
    (lambda u: u.add("siti", "Admin", ADMIN), "role", "'Admin'"),
    (lambda u: u.set_role("existing", "chief", ADMIN), "role", "role: 'chief'"),
    (lambda u: u.set_role("existing", "officer", ADMIN), "role", "already has the role"),
    (lambda u: u.disable("existing", "", ADMIN), "reason", "reason: required"),
    (lambda u: u.disable("existing", "   ", ADMIN), "reason", "reason: required"),
    (lambda u: u.disable("existing", "x" * 201, ADMIN), "reason", "1 to 200 characters"),
    (lambda u: u.add("existing", "dpo", ADMIN), "username", "'existing' already exists"),
    (lambda u: u.set_role("nobody", "dpo", ADMIN), "username", "no user 'nobody'"),
    (lambda u: u.new_token("nobody", ADMIN), "username", "no user 'nobody'"),
    (lambda u: u.disable("nobody", "why", ADMIN), "username", "no user 'nobody'"),
    (lambda u: u.new_token("gone", ADMIN), "username", "'gone' is disabled (left)"),
    (lambda u: u.set_role("gone", "dpo", ADMIN), "username", "'gone' is disabled"),
    (lambda u: u.disable("gone", "again", ADMIN), "username", "'gone' is disabled"),
    (lambda u: u.add("siti", "officer", Principal("existing", "officer")), "role",
     "existing acts as officer; only admin may add users"),
    (lambda u: u.set_role("existing", "admin", Principal("dpo1", "dpo")), "role",
     "only admin may change roles"),
    (lambda u: u.new_token("existing", Principal("s", "supervisor")), "role", "issue tokens"),
    (lambda u: u.disable("existing", "x", Principal("s", "supervisor")), "role", "disable"),
])
def test_every_refusal_names_its_field_and_writes_nothing(
        database: Database, call: Callable[[Users], object], field: str, message: str) -> None:
    users = Users(database)
    users.add("existing", "officer", ADMIN)
    users.add("gone", "officer", ADMIN)
    users.disable("gone", "left", ADMIN)
    before = entries(database)
    with pytest.raises(UserError) as caught:
        call(users)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ") and message in str(caught.value)
    assert entries(database) == before
    assert [(u.username, u.role, u.active) for u in users.list()] == [
        ("existing", "officer", True), ("gone", "officer", False)]


def test_error_kinds_tell_an_endpoint_its_answer(database: Database) -> None:
    users = Users(database)
    with pytest.raises(NotPermitted):
        users.add("x", "officer", Principal("o", "officer"))
    with pytest.raises(UnknownUser):
        users.new_token("x", ADMIN)
    users.add("x", "officer", ADMIN)
    with pytest.raises(UserConflict):
        users.add("x", "officer", ADMIN)
    assert issubclass(UserError, ValueError)


def test_init_creates_the_admin_whose_token_it_prints(database: Database) -> None:
    result = init_node(database, "AUS", "http://127.0.0.1:1", generate("sig").public_jwk(),
                       PASSPHRASE)
    node = Node(database, PASSPHRASE)
    assert node.authenticate(result.api_token) == Principal("admin", "admin")
    assert node.authenticate(result.api_token + "x") is None
    assert [(u.username, u.role) for u in node.users.list()] == [("admin", "admin")]
    with database.session() as s:
        assert s.get(Setting, "api_token_sha256") is None


def test_the_migration_makes_the_old_api_token_the_admins(
        backend: str, new_db_url: Callable[[str], str]) -> None:
    db = node_database(new_db_url(backend))
    db.upgrade("node_0003")  # a node of the previous release
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(Setting(key="api_token_sha256", value=hashlib.sha256(token.encode()).hexdigest()))
    db.upgrade()
    assert db.is_current()
    users = Users(db)
    assert users.authenticate(token) == Principal("admin", "admin")
    with db.session() as s:
        assert s.scalars(select(Setting.key)).all() == []
    # The carried-forward admin is a user like any other.
    users.add("deputy", "admin", ADMIN)
    assert users.disable("admin", "token rotated out", ADMIN).active is False
    assert users.authenticate(token) is None


def test_a_node_without_the_old_setting_migrates_with_no_user(database: Database) -> None:
    assert Users(database).list() == []
