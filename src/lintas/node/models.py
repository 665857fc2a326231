"""The node's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lintas.storage import UTCDateTime


class Base(DeclarativeBase):
    pass


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class NodeKey(Base):
    """One of our key pairs; the private half only sealed under the node passphrase."""

    __tablename__ = "node_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    use: Mapped[str] = mapped_column(String(3))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DirectoryCache(Base):
    __tablename__ = "directory_cache"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # queued | sent | failed | expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class InboxMessage(Base):
    __tablename__ = "inbox"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sender: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(36), nullable=True)
    agreement: Mapped[str | None] = mapped_column(String(128), nullable=True)


class RejectedEnvelope(Base):
    """Metadata of an envelope this node refused on receipt (never its content)."""

    __tablename__ = "rejected_envelopes"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36))
    claimed_sender: Mapped[str | None] = mapped_column(String(10), nullable=True)
    code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class GalleryPerson(Base):
    """A person of the national gallery: the national record id and nothing else personal
    (biographical data stays in the national system the reference points to)."""

    __tablename__ = "gallery_persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GalleryFinger(Base):
    """One enrolled impression of one finger, as an ISO/IEC 19794-2:2011 record. Images
    are never stored."""

    __tablename__ = "gallery_fingers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_persons.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1 right thumb ... 10 left little
    impression: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per person and position
    template: Mapped[bytes] = mapped_column(LargeBinary)
    nfiq2: Mapped[int | None] = mapped_column(Integer, nullable=True)
    minutiae_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("person_id", "position", "impression",
                         name="uq_gallery_fingers_person_position_impression"),
        CheckConstraint("position BETWEEN 1 AND 10", name="ck_gallery_fingers_position"),
        CheckConstraint("impression >= 1", name="ck_gallery_fingers_impression"),
    )


class AuditRecord(Base):
    """One entry of the audit trail (`lintas.audit.chain`): never biometric data."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str | None] = mapped_column(String(200), nullable=True)
    agreement: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message_ids: Mapped[str] = mapped_column(Text)  # JSON list
    details: Mapped[str] = mapped_column(Text)  # JSON object
    previous: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The last entry of the audit trail, in one row that every append locks: appends
    are serialised, so the chain can never fork."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_head_single_row"),)
