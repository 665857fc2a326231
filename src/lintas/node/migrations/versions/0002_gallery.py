"""Node schema: the fingerprint gallery (persons and their enrolled finger templates).

Revision ID: node_0002
Revises: node_0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0002"
down_revision = "node_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gallery_persons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("reference", name="uq_gallery_persons_reference"),
    )
    op.create_table(
        "gallery_fingers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.Integer,
                  sa.ForeignKey("gallery_persons.id", ondelete="CASCADE",
                                name="fk_gallery_fingers_person"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("impression", sa.Integer, nullable=False),
        sa.Column("template", sa.LargeBinary, nullable=False),
        sa.Column("nfiq2", sa.Integer, nullable=True),
        sa.Column("minutiae_count", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("person_id", "position", "impression",
                            name="uq_gallery_fingers_person_position_impression"),
        sa.CheckConstraint("position BETWEEN 1 AND 10", name="ck_gallery_fingers_position"),
        sa.CheckConstraint("impression >= 1", name="ck_gallery_fingers_impression"),
    )
    op.create_index("ix_gallery_fingers_person_id", "gallery_fingers", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_gallery_fingers_person_id", "gallery_fingers")
    op.drop_table("gallery_fingers")
    op.drop_table("gallery_persons")
