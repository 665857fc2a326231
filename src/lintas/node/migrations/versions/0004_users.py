"""Node schema: users with roles, each with an API token kept as its SHA-256.

Carries an existing node forward: the single API token of earlier releases (the setting
`api_token_sha256`) becomes the token of the user "admin", role admin, and the setting
goes. Downgrading puts the token of the oldest active admin back into the setting.

Revision ID: node_0004
Revises: node_0003
Create Date: 2026-11-24
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0004"
down_revision = "node_0003"
branch_labels = None
depends_on = None

# Lightweight tables: the migration must not depend on today's models.
_settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
_users = sa.table(
    "users",
    sa.column("id", sa.Integer), sa.column("username", sa.String),
    sa.column("role", sa.String), sa.column("token_sha256", sa.String),
    sa.column("active", sa.Boolean), sa.column("created_at", UTCDateTime),
    sa.column("updated_at", UTCDateTime),
)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("disabled_at", UTCDateTime, nullable=True),
        sa.Column("disabled_reason", sa.String(200), nullable=True),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.UniqueConstraint("token_sha256", name="uq_users_token_sha256"),
        sa.CheckConstraint("role IN ('officer', 'supervisor', 'dpo', 'admin')",
                           name="ck_users_role"),
    )
    bind = op.get_bind()
    token_hash = bind.execute(sa.select(_settings.c.value)
                              .where(_settings.c.key == "api_token_sha256")).scalar()
    if token_hash is not None:
        now = datetime.now(UTC)
        bind.execute(sa.insert(_users).values(
            username="admin", role="admin", token_sha256=token_hash, active=True,
            created_at=now, updated_at=now))
        bind.execute(sa.delete(_settings).where(_settings.c.key == "api_token_sha256"))


def downgrade() -> None:
    bind = op.get_bind()
    token_hash = bind.execute(
        sa.select(_users.c.token_sha256)
        .where(_users.c.role == "admin", _users.c.active.is_(True))
        .order_by(_users.c.id).limit(1)).scalar()
    if token_hash is not None:
        bind.execute(sa.insert(_settings).values(key="api_token_sha256", value=token_hash))
    op.drop_table("users")
