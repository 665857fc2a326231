"""Database plumbing on SQLite and PostgreSQL: migrations, time type, URLs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from lintas.hub import hub_database
from lintas.hub.models import Member
from lintas.node import node_database
from lintas.storage import normalise_url, utcnow
from lintas.storage.database import StorageError


def test_migrations_create_both_schemas_side_by_side(
    backend: str, new_db_url: Callable[[str], str]
) -> None:
    url = new_db_url(backend)
    hub, node = hub_database(url), node_database(url)
    with pytest.raises(StorageError, match="lintas hub init"):
        hub.require_current("hub")
    hub.upgrade()
    node.upgrade()
    hub.upgrade()  # idempotent
    assert hub.is_current() and node.is_current()
    tables = set(inspect(hub.engine).get_table_names())
    assert {"members", "member_keys", "messages", "hub_keys", "lintas_hub_version"} <= tables
    assert {"outbox", "inbox", "node_keys", "settings", "lintas_node_version"} <= tables
    hub.dispose()
    node.dispose()


def test_times_come_back_aware_and_in_utc(backend: str,
                                          new_db_url: Callable[[str], str]) -> None:
    db = hub_database(new_db_url(backend))
    db.upgrade()
    jakarta = timezone(timedelta(hours=7))
    when = datetime(2026, 11, 23, 20, 0, 0, 123456, tzinfo=jakarta)
    with db.session() as s:
        s.add(Member(code="IDN", name="Indonesia", kind="state", status="active",
                     created_at=when, updated_at=utcnow()))
    with db.session() as s:
        stored = s.scalars(select(Member)).one().created_at
    assert stored == when and stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"), db.session() as s:
        s.add(Member(code="AUS", name="Australia", kind="state", status="active",
                     created_at=datetime(2026, 1, 1), updated_at=utcnow()))
    with db.session() as s:
        assert s.scalars(select(Member.code)).all() == ["IDN"], "nothing half-written"
    db.dispose()


def test_urls() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("relative/hub.db").startswith("sqlite:////")
    with pytest.raises(StorageError, match="only sqlite"):
        normalise_url("mysql://root@localhost/x")
    assert datetime.now(UTC) - utcnow() < timedelta(seconds=1)
