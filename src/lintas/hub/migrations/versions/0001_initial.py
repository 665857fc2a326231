"""Hub schema: hub keys, members and their keys, relayed messages.

Revision ID: hub_0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from lintas.storage import UTCDateTime

revision = "hub_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("private_sealed", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "members",
        sa.Column("code", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "member_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("member_code", sa.String(10), sa.ForeignKey("members.code"), nullable=False),
        sa.Column("use", sa.String(3), nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("valid_from", UTCDateTime, nullable=False),
        sa.Column("valid_until", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_member_keys_member_code", "member_keys", ["member_code"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sender", sa.String(10), nullable=False),
        sa.Column("recipient", sa.String(10), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("envelope", sa.Text, nullable=True),
        sa.Column("leased_until", UTCDateTime, nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("delivery_count", sa.Integer, nullable=False),
        sa.Column("acked_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_messages_expires_at", "messages", ["expires_at"])
    op.create_index("ix_messages_lease_token", "messages", ["lease_token"])
    op.create_index("ix_messages_mailbox", "messages", ["recipient", "acked_at", "received_at"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("member_keys")
    op.drop_table("members")
    op.drop_table("hub_keys")
