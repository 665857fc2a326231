"""The hub's tables. Nothing here may hold a payload in clear: only sealed envelopes."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lintas.storage import UTCDateTime


class Base(DeclarativeBase):
    pass


class HubKey(Base):
    __tablename__ = "hub_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_jwk: Mapped[str] = mapped_column(Text)
    private_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Member(Base):
    __tablename__ = "members"
    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberKey(Base):
    __tablename__ = "member_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_code: Mapped[str] = mapped_column(ForeignKey("members.code"), index=True)
    use: Mapped[str] = mapped_column(String(3))
    public_jwk: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Message(Base):
    """One relayed envelope. `envelope` is cleared on acknowledgement; the row (metadata
    only) stays until expiry so that a replayed id is still recognised, then is purged."""

    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sender: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    envelope: Mapped[str | None] = mapped_column(Text, nullable=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    delivery_count: Mapped[int] = mapped_column(Integer, default=0)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_messages_mailbox", "recipient", "acked_at", "received_at"),)


class AuditWitness(Base):
    """A chain head of a member's audit trail, as the member published it: the hub keeps
    every one, so that the member cannot later rewrite or cut its history unseen."""

    __tablename__ = "audit_witness"
    member: Mapped[str] = mapped_column(String(10), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegisteredAgreement(Base):
    """A countersigned bilateral agreement (both signatures checked at registration) and
    its current status. The hub decides from this row alone whether an envelope that
    names the agreement may pass."""

    __tablename__ = "agreements"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    proposer: Mapped[str] = mapped_column(String(10))
    counterparty: Mapped[str] = mapped_column(String(10))
    document: Mapped[str] = mapped_column(Text)  # JWS General JSON Serialization
    terms_sha256: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # active | suspended | terminated
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_notice: Mapped[str | None] = mapped_column(Text, nullable=True)
    registered_by: Mapped[str] = mapped_column(String(10))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AgreementUsage(Base):
    """Check requests admitted per agreement, requester and UTC day: the quotas."""

    __tablename__ = "agreement_usage"
    agreement_id: Mapped[str] = mapped_column(
        ForeignKey("agreements.id", ondelete="CASCADE"), primary_key=True)
    requester: Mapped[str] = mapped_column(String(10), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
