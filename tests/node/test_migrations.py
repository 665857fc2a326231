"""The node's migrations create exactly the schema its models describe (SQLite and
PostgreSQL): a model changed without its migration, or the reverse, fails here."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lintas.node import VERSION_TABLE, node_database
from lintas.node.models import Base


def test_the_migrated_schema_matches_the_models(backend: str,
                                                new_db_url: Callable[[str], str]) -> None:
    db = node_database(new_db_url(backend))
    db.upgrade()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.dispose()
