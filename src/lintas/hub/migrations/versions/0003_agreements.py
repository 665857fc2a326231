"""Hub schema: the registry of countersigned agreements and their quota use.

Revision ID: hub_0003
Revises: hub_0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "hub_0003"
down_revision = "hub_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("proposer", sa.String(10), nullable=False),
        sa.Column("counterparty", sa.String(10), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("terms_sha256", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_until", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("status_notice", sa.Text, nullable=True),
        sa.Column("registered_by", sa.String(10), nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "agreement_usage",
        sa.Column("agreement_id", sa.String(64),
                  sa.ForeignKey("agreements.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("requester", sa.String(10), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agreement_usage")
    op.drop_table("agreements")
