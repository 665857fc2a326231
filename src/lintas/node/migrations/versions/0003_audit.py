"""Node schema: the hash-chained audit trail and its head.

Revision ID: node_0003
Revises: node_0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0003"
down_revision = "node_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=True),
        sa.Column("agreement", sa.String(200), nullable=True),
        sa.Column("message_ids", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("previous", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.UniqueConstraint("digest", name="uq_audit_log_digest"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.execute("INSERT INTO audit_head (id, seq, digest) VALUES (1, 0, '" + "0" * 64 + "')")


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_log")
