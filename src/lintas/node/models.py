"""The node's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
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


class GalleryChange(Base):
    """A finger enrolled or removed, in commit order: every process serving this gallery
    replays the changes it did not make itself into its 1:N index (`Gallery.sync_index`),
    so a `lintas gallery` command run beside a serving node, or another node process on
    the same PostgreSQL database, is searched within a second. Kept for a day."""

    __tablename__ = "gallery_changes"
    # AUTOINCREMENT on SQLite: an id is never reused, even after the newest row is pruned.
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finger_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


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


class User(Base):
    """A person who uses this node, in one role (`lintas.node.users`). The API token is
    kept only as its SHA-256: the token itself is shown once and never stored."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        UniqueConstraint("username", name="uq_users_username"),
        UniqueConstraint("token_sha256", name="uq_users_token_sha256"),
        CheckConstraint("role IN ('officer', 'supervisor', 'dpo', 'admin')",
                        name="ck_users_role"),
    )


class RegisteredDocument(Base):
    """An entry of the register of lost, stolen and revoked travel documents
    (`lintas.node.documents`). A withdrawn entry stays, for history; at most one entry per
    document is active (not withdrawn)."""

    __tablename__ = "document_register"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_number: Mapped[str] = mapped_column(String(20))
    issuing_state: Mapped[str] = mapped_column(String(3))
    document_type: Mapped[str] = mapped_column(String(1))
    status: Mapped[str] = mapped_column(String(8))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_by: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str | None] = mapped_column(String(500), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        # The active entry of a document is unique; the lookup of a check uses this index.
        Index("uq_document_register_active", "issuing_state", "document_number",
              unique=True, sqlite_where=text("withdrawn_at IS NULL"),
              postgresql_where=text("withdrawn_at IS NULL")),
        CheckConstraint("status IN ('lost', 'stolen', 'revoked')",
                        name="ck_document_register_status"),
        CheckConstraint("document_type IN ('P', 'I', 'A', 'C', 'V')",
                        name="ck_document_register_type"),
    )


class NodeAgreement(Base):
    """A bilateral agreement as this node knows it (docs/agreements.md): proposed by us
    and waiting for the partner, received and waiting for our decision, or in force."""

    __tablename__ = "partner_agreements"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    counterpart: Mapped[str] = mapped_column(String(10))  # the other party
    our_role: Mapped[str] = mapped_column(String(12))  # proposer | counterparty
    document: Mapped[str] = mapped_column(Text)  # JWS General JSON Serialization
    terms_sha256: Mapped[str] = mapped_column(String(64))
    # proposed | received | declined | active | suspended | terminated
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Check(Base):
    """One identity check, on the requester's or the responder's side (docs/checks.md).
    Its state only moves along `lintas.exchange.workflow`. Never holds a probe: see
    CheckProbe."""

    __tablename__ = "checks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    side: Mapped[str] = mapped_column(String(9))  # requester | responder
    partner: Mapped[str] = mapped_column(String(10))
    agreement: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    query_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32), index=True)
    officer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    request_message: Mapped[str] = mapped_column(String(36))
    probe_sha256: Mapped[str] = mapped_column(String(64))
    max_candidates: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(8), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    candidates: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disclosure_request: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    decision: Mapped[str | None] = mapped_column(String(8), nullable=True)
    disclosed: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, requester
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (CheckConstraint("side IN ('requester', 'responder')",
                                      name="ck_checks_side"),)


class CheckProbe(Base):
    """A received probe waiting to be matched; deleted at the `match` transition (with
    SQLite's secure_delete and a WAL truncation, so its bytes leave the files too)."""

    __tablename__ = "check_probes"
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"),
                                          primary_key=True)
    probe: Mapped[str] = mapped_column(Text)  # JSON, as received


class Protection(Base):
    """A protection on a gallery record that no agreement overrides: the record is never
    disclosed to the listed states, nor for the listed purposes; a check that would find
    it is answered exactly as a no-hit."""

    __tablename__ = "protections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_persons.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # refugee | victim | witness
    states: Mapped[str] = mapped_column(Text)  # JSON list of member codes
    purposes: Mapped[str] = mapped_column(Text)  # JSON list of purposes
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PersonData(Base):
    """What may be disclosed about a gallery person at step 2, by data category."""

    __tablename__ = "person_data"
    person_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_persons.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[str] = mapped_column(Text)  # JSON {category: text}


class GalleryImport(Base):
    """A bulk enrolment run by the node in the background; its progress and every
    rejected item with the reason. A job cut short by a restart is marked interrupted."""

    __tablename__ = "gallery_imports"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(12))  # running | done | interrupted
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    persons: Mapped[int] = mapped_column(Integer, default=0)
    fingers: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{item, reference, reason}]
