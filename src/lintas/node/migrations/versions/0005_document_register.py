"""Node schema: the register of lost, stolen and revoked travel documents.

At most one active (not withdrawn) entry per document, enforced by a partial unique
index that also serves the lookups of document checks.

Revision ID: node_0005
Revises: node_0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0005"
down_revision = "node_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_register",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_number", sa.String(20), nullable=False),
        sa.Column("issuing_state", sa.String(3), nullable=False),
        sa.Column("document_type", sa.String(1), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reported_at", UTCDateTime, nullable=False),
        sa.Column("reported_by", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(64), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("withdrawn_at", UTCDateTime, nullable=True),
        sa.Column("withdrawn_by", sa.String(200), nullable=True),
        sa.Column("withdrawn_reason", sa.String(200), nullable=True),
        sa.CheckConstraint("status IN ('lost', 'stolen', 'revoked')",
                           name="ck_document_register_status"),
        sa.CheckConstraint("document_type IN ('P', 'I', 'A', 'C', 'V')",
                           name="ck_document_register_type"),
    )
    op.create_index("uq_document_register_active", "document_register",
                    ["issuing_state", "document_number"], unique=True,
                    sqlite_where=sa.text("withdrawn_at IS NULL"),
                    postgresql_where=sa.text("withdrawn_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_document_register_active", "document_register")
    op.drop_table("document_register")
