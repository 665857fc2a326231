"""Hub schema: the witnessed heads of the members' audit trails.

Revision ID: hub_0002
Revises: hub_0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "hub_0002"
down_revision = "hub_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_witness",
        sa.Column("member", sa.String(10), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_witness")
