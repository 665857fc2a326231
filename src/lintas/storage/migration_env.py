"""The body of every Alembic env.py in Lintas (hub and node alike).

Migrations are always run through `Database.upgrade`, which hands Alembic an open
connection and the version table to use.
"""

from __future__ import annotations

from alembic import context


def run() -> None:
    config = context.config
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
