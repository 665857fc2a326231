"""Node schema: agreements, checks, probes awaiting matching, protections, person data.

Revision ID: node_0006
Revises: node_0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "node_0006"
down_revision = "node_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partner_agreements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("counterpart", sa.String(10), nullable=False),
        sa.Column("our_role", sa.String(12), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("terms_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "checks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("side", sa.String(9), nullable=False),
        sa.Column("partner", sa.String(10), nullable=False),
        sa.Column("agreement", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("query_type", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("officer", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("deadline", UTCDateTime, nullable=False),
        sa.Column("request_message", sa.String(36), nullable=False),
        sa.Column("probe_sha256", sa.String(64), nullable=False),
        sa.Column("max_candidates", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("candidates", sa.Text, nullable=False),
        sa.Column("answered_at", UTCDateTime, nullable=True),
        sa.Column("disclosure_request", sa.Text, nullable=True),
        sa.Column("decision", sa.String(8), nullable=True),
        sa.Column("disclosed", sa.Text, nullable=True),
        sa.Column("retain_until", UTCDateTime, nullable=True),
        sa.Column("purged_at", UTCDateTime, nullable=True),
        sa.CheckConstraint("side IN ('requester', 'responder')", name="ck_checks_side"),
    )
    op.create_table(
        "check_probes",
        sa.Column("check_id", sa.String(36),
                  sa.ForeignKey("checks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("probe", sa.Text, nullable=False),
    )
    op.create_table(
        "protections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.Integer,
                  sa.ForeignKey("gallery_persons.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("states", sa.Text, nullable=False),
        sa.Column("purposes", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "person_data",
        sa.Column("person_id", sa.Integer,
                  sa.ForeignKey("gallery_persons.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("person_data", "protections", "check_probes", "checks", "partner_agreements"):
        op.drop_table(table)
