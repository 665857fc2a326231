"""Every refusal in the Lintas protocol: a stable code, an HTTP status, a message.

The codes are part of the protocol (docs/protocol.md lists them); another member's
implementation relies on them, so they never change meaning.
"""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Base of all protocol refusals. `code` is stable; the message is for people."""

    code: ClassVar[str] = "protocol_error"
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class MalformedEnvelope(ProtocolError):
    code = "malformed_envelope"
    status = 400


class UnsupportedAlgorithm(ProtocolError):
    code = "unsupported_algorithm"
    status = 400


class EnvelopeTooLarge(ProtocolError):
    code = "envelope_too_large"
    status = 413


class UnknownSender(ProtocolError):
    code = "unknown_sender"
    status = 403


class SenderSuspended(ProtocolError):
    code = "sender_suspended"
    status = 403


class UnknownRecipient(ProtocolError):
    code = "unknown_recipient"
    status = 422


class RecipientSuspended(ProtocolError):
    code = "recipient_suspended"
    status = 422


class UnknownKey(ProtocolError):
    code = "unknown_key"
    status = 403


class BadSignature(ProtocolError):
    code = "bad_signature"
    status = 403


class Expired(ProtocolError):
    code = "expired"
    status = 422


class NotYetValid(ProtocolError):
    code = "not_yet_valid"
    status = 422


class LifetimeTooLong(ProtocolError):
    code = "lifetime_too_long"
    status = 422


class DuplicateMessage(ProtocolError):
    code = "duplicate_message"
    status = 409


class Unauthorized(ProtocolError):
    code = "unauthorized"
    status = 401


class BadRequest(ProtocolError):
    code = "bad_request"
    status = 400


class UnknownMessageType(ProtocolError):
    code = "unknown_message_type"
    status = 422


class UndecryptablePayload(ProtocolError):
    """Recipient side: the payload cannot be decrypted with any of our keys."""

    code = "undecryptable_payload"
    status = 422


class PayloadMismatch(ProtocolError):
    """Recipient side: the payload's id, sender or recipient differ from the header's."""

    code = "payload_mismatch"
    status = 422


class InvalidBody(ProtocolError):
    code = "invalid_body"
    status = 422


class DirectoryError(ProtocolError):
    code = "directory_invalid"
    status = 502


class AuditHeadConflict(ProtocolError):
    """Hub side: an audit chain head that contradicts one the hub already witnessed."""

    code = "audit_head_conflict"
    status = 409


class NoAgreement(ProtocolError):
    """The envelope names no agreement, or one the hub does not know between its sender
    and recipient in that direction."""

    code = "no_agreement"
    status = 403


class AgreementInactive(ProtocolError):
    """The agreement is suspended, terminated, expired or not yet in force."""

    code = "agreement_inactive"
    status = 403


class QuotaExhausted(ProtocolError):
    """The agreement's daily or annual quota of checks in this direction is used up."""

    code = "quota_exhausted"
    status = 429


class InvalidAgreement(ProtocolError):
    """An agreement document or status notice that is malformed or wrongly signed."""

    code = "invalid_agreement"
    status = 422


class AgreementConflict(ProtocolError):
    """Another agreement is registered under this id, or the change is not allowed."""

    code = "agreement_conflict"
    status = 409


class PurposeNotAgreed(ProtocolError):
    """Responder side: the check's purpose is not one the agreement allows."""

    code = "purpose_not_agreed"
    status = 403


class QueryTypeNotAgreed(ProtocolError):
    """Responder side: the check's query type is not one the agreement allows."""

    code = "query_type_not_agreed"
    status = 403


class BadProbe(ProtocolError):
    """Responder side: the probe cannot be used (malformed template, too few minutiae,
    a machine-readable zone with a failing check digit, an unknown record)."""

    code = "bad_probe"
    status = 422


ALL_ERRORS: tuple[type[ProtocolError], ...] = (
    MalformedEnvelope,
    UnsupportedAlgorithm,
    EnvelopeTooLarge,
    UnknownSender,
    SenderSuspended,
    UnknownRecipient,
    RecipientSuspended,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    LifetimeTooLong,
    DuplicateMessage,
    Unauthorized,
    BadRequest,
    UnknownMessageType,
    UndecryptablePayload,
    PayloadMismatch,
    InvalidBody,
    DirectoryError,
    AuditHeadConflict,
    NoAgreement,
    AgreementInactive,
    QuotaExhausted,
    InvalidAgreement,
    AgreementConflict,
    PurposeNotAgreed,
    QueryTypeNotAgreed,
    BadProbe,
)

BY_CODE: dict[str, type[ProtocolError]] = {cls.code: cls for cls in ALL_ERRORS}


def from_json(status: int, body: object) -> ProtocolError:
    """Rebuild the typed error from a hub answer; unknown shapes become BadRequest."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = BY_CODE.get(str(err.get("code")), ProtocolError)
        return cls(str(err.get("message", "")))
    return BadRequest(f"HTTP {status}: {str(body)[:200]}")
