"""Node schema: the journal of gallery changes that keeps every serving process's 1:N
index current.

Revision ID: node_0008
Revises: node_0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0008"
down_revision = "node_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gallery_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("finger_id", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_gallery_changes_at", "gallery_changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_gallery_changes_at", table_name="gallery_changes")
    op.drop_table("gallery_changes")
