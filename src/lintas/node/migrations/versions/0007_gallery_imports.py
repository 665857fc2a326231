"""Node schema: bulk gallery imports run in the background, with their progress.

Revision ID: node_0007
Revises: node_0006
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0007"
down_revision = "node_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gallery_imports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("persons", sa.Integer, nullable=False),
        sa.Column("fingers", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gallery_imports")
