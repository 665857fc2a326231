"""Engines, sessions and Alembic migrations for one database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config


class StorageError(Exception):
    """The database cannot be opened or is not in the expected state."""


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and plain file paths; use psycopg 3 for PostgreSQL."""
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        return f"sqlite:///{path}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(
            f"database URL {parsed.render_as_string(hide_password=True)!r}: "
            "only sqlite:/// and postgresql:// are supported"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the relay read while it writes; busy_timeout makes concurrent writers wait
    # instead of failing; secure_delete overwrites purged rows so freed pages keep nothing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One database, migrated by the Alembic scripts at `migrations` (a directory).

    `version_table` keeps the hub's and a node's migration state apart, so both may
    share one PostgreSQL database (as the test suite does).
    """

    def __init__(self, url: str, migrations: Path, version_table: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.migrations = migrations
        self.version_table = version_table
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; when threads of one process collide, its busy
        # handler sleeps for 1-100 ms. Taking turns in-process avoids those stalls (and the
        # deferred-transaction upgrade failures); other processes still use busy_timeout.
        self._turn: threading.RLock | None = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else None
        )

    def _alembic_config(self) -> Config:
        from alembic.config import Config  # imported late: alembic is slow to import

        cfg = Config()
        cfg.set_main_option("script_location", str(self.migrations))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["version_table"] = self.version_table
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Migrate to `revision` (the latest by default; an earlier one for tests of a
        migration's data step)."""
        from alembic import command

        cfg = self._alembic_config()
        with self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    def is_current(self) -> bool:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        with self.engine.connect() as connection:
            ctx = MigrationContext.configure(
                connection, opts={"version_table": self.version_table}
            )
            return ctx.get_current_revision() == head

    def require_current(self, what: str) -> None:
        if not self.is_current():
            raise StorageError(
                f"the {what} database at {make_url(self.url).render_as_string(hide_password=True)} "
                f"is not initialised or not migrated: run `lintas {what} init` for a new "
                f"one, or `lintas {what} migrate` after an upgrade"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        if self._turn is None:
            with self._sessions() as session, session.begin():
                yield session
            return
        with self._turn, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core transaction without the ORM session, for hot single-statement writes."""
        if self._turn is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._turn, self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
