"""Sealed envelopes: a JWS (Ed25519) over a routing header and a JWE (ECDH-ES/X25519,
A256GCM) payload.

    envelope = JWS compact, protected {"alg":"Ed25519","kid":<sender sig kid>,
                                       "typ":"lintas-envelope+jws"}
      JWS payload = JSON routing header:
        {"v":1,"id","type","from","to","agreement","created","expires",
         "in_reply_to","payload": <JWE compact>}
      JWE protected {"alg":"ECDH-ES","enc":"A256GCM","kid":<recipient enc kid>,
                     "cty":"lintas-payload+json","epk":...}
      JWE plaintext = {"id","type","from","to","body":{...}}

The hub reads the routing header and checks the signature; it can never decrypt the
payload. The recipient checks the signature again, decrypts, and insists that the
payload's id, type, sender and recipient equal the header's, so a payload cannot be
lifted into another envelope. docs/protocol.md is the normative description.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lintas.crypto import KeyPair
from lintas.protocol import errors as e
from lintas.protocol.members import is_member_code
from lintas.protocol.messages import TYPE_PATTERN, is_known_type, validate_body
from lintas.protocol.timefmt import format_time, parse_time

VERSION = 1
ENVELOPE_TYP = "lintas-envelope+jws"
PAYLOAD_CTY = "lintas-payload+json"
SIGN_ALG = "Ed25519"
# RFC 9864 deprecates the polymorphic "EdDSA"; we still accept it from other members.
VERIFY_ALGS = ("Ed25519", "EdDSA")
KEY_ALG, CONTENT_ALG = "ECDH-ES", "A256GCM"

CLOCK_SKEW = timedelta(minutes=5)
MAX_LIFETIME = timedelta(days=7)
DEFAULT_LIFETIME = timedelta(days=1)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_HEADER_KEYS = {
    "v", "id", "type", "from", "to", "agreement", "created", "expires", "in_reply_to",
    "payload",
}


@dataclass(frozen=True)
class RoutingHeader:
    id: str
    type: str
    sender: str
    recipient: str
    created: datetime
    expires: datetime
    agreement: str | None = None
    in_reply_to: str | None = None

    @staticmethod
    def new(
        message_type: str,
        sender: str,
        recipient: str,
        now: datetime,
        lifetime: timedelta = DEFAULT_LIFETIME,
        agreement: str | None = None,
        in_reply_to: str | None = None,
    ) -> RoutingHeader:
        created = now.replace(microsecond=0)
        return RoutingHeader(
            id=str(uuid.uuid4()),
            type=message_type,
            sender=sender,
            recipient=recipient,
            created=created,
            expires=created + lifetime,
            agreement=agreement,
            in_reply_to=in_reply_to,
        )

    def as_json(self, payload: str) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "type": self.type,
            "from": self.sender,
            "to": self.recipient,
            "agreement": self.agreement,
            "created": format_time(self.created),
            "expires": format_time(self.expires),
            "in_reply_to": self.in_reply_to,
            "payload": payload,
        }


@dataclass(frozen=True)
class ParsedEnvelope:
    """An envelope whose structure is valid; its signature is not yet checked."""

    raw: str
    alg: str
    kid: str
    header: RoutingHeader
    payload_jwe: str

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(frozen=True)
class OpenedMessage:
    header: RoutingHeader
    body: dict[str, Any]


def _b64json(segment: str, what: str) -> Any:
    if not _B64URL.match(segment):
        raise e.MalformedEnvelope(f"{what}: not base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise e.MalformedEnvelope(f"{what}: not base64url-encoded JSON") from exc


def _opt_str(obj: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (pattern and not pattern.match(value)) or len(value) > 128:
        raise e.MalformedEnvelope(f"{key}: invalid value")
    return value


def parse(envelope: str | bytes) -> ParsedEnvelope:
    """Check an envelope's structure and read its routing header (no crypto yet)."""
    if isinstance(envelope, bytes):
        try:
            envelope = envelope.decode("ascii")
        except UnicodeDecodeError as exc:
            raise e.MalformedEnvelope("an envelope is ASCII (JWS compact serialization)") from exc
    envelope = envelope.strip()
    parts = envelope.split(".")
    if len(parts) != 3:
        raise e.MalformedEnvelope("an envelope is a JWS in compact serialization (3 parts)")
    protected = _b64json(parts[0], "JWS protected header")
    if not isinstance(protected, dict):
        raise e.MalformedEnvelope("JWS protected header: must be a JSON object")
    alg = protected.get("alg")
    if alg not in VERIFY_ALGS:
        raise e.UnsupportedAlgorithm(f"alg {alg!r}: envelopes are signed with Ed25519")
    if protected.get("typ") != ENVELOPE_TYP:
        raise e.MalformedEnvelope(f"typ: must be {ENVELOPE_TYP!r}")
    if set(protected) - {"alg", "kid", "typ"}:
        raise e.MalformedEnvelope("JWS protected header: only alg, kid and typ are allowed")
    kid = protected.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128:
        raise e.MalformedEnvelope("kid: the sender's signing key id is required")
    hdr = _b64json(parts[1], "routing header")
    if not isinstance(hdr, dict):
        raise e.MalformedEnvelope("routing header: must be a JSON object")
    if type(hdr.get("v")) is not int or hdr.get("v") != VERSION:
        raise e.MalformedEnvelope(f"v: protocol version {hdr.get('v')!r} is not supported")
    unknown = set(hdr) - _HEADER_KEYS
    if unknown:
        raise e.MalformedEnvelope(f"routing header: unknown field(s) {sorted(unknown)}")
    msg_id = hdr.get("id")
    if not isinstance(msg_id, str) or not _UUID.match(msg_id):
        raise e.MalformedEnvelope("id: must be a lower-case UUID")
    mtype = hdr.get("type")
    if not isinstance(mtype, str) or not TYPE_PATTERN.match(mtype):
        raise e.MalformedEnvelope("type: must look like 'diagnostic.ping'")
    for key in ("from", "to"):
        if not is_member_code(hdr.get(key)):
            raise e.MalformedEnvelope(f"{key}: not a member code")
    payload = hdr.get("payload")
    if not isinstance(payload, str) or payload.count(".") != 4:
        raise e.MalformedEnvelope("payload: must be a JWE in compact serialization")
    header = RoutingHeader(
        id=msg_id,
        type=mtype,
        sender=hdr["from"],
        recipient=hdr["to"],
        created=parse_time(hdr.get("created"), "created"),
        expires=parse_time(hdr.get("expires"), "expires"),
        agreement=_opt_str(hdr, "agreement", None),
        in_reply_to=_opt_str(hdr, "in_reply_to", _UUID),
    )
    if header.sender == header.recipient:
        raise e.MalformedEnvelope("to: a member cannot send to itself")
    if header.expires <= header.created:
        raise e.MalformedEnvelope("expires: must be after created")
    return ParsedEnvelope(raw=envelope, alg=alg, kid=kid, header=header, payload_jwe=payload)


def check_times(
    header: RoutingHeader,
    now: datetime,
    skew: timedelta = CLOCK_SKEW,
    max_lifetime: timedelta = MAX_LIFETIME,
) -> None:
    if header.expires <= now:
        raise e.Expired(f"message {header.id} expired at {format_time(header.expires)}")
    if header.created > now + skew:
        raise e.NotYetValid(
            f"created {format_time(header.created)} is more than {skew} ahead of the hub's clock"
        )
    if header.expires - header.created > max_lifetime:
        raise e.LifetimeTooLong(f"expires: at most {max_lifetime} after created")


def verify_signature(parsed: ParsedEnvelope, sender_key: OKPKey) -> None:
    try:
        jws.deserialize_compact(parsed.raw, sender_key, algorithms=list(VERIFY_ALGS))
    except JoseError as exc:
        raise e.BadSignature(
            f"the envelope's signature does not verify with {parsed.header.sender}'s key "
            f"{parsed.kid}"
        ) from exc


def seal(
    header: RoutingHeader,
    body: dict[str, Any],
    signing: KeyPair,
    recipient_key: OKPKey,
) -> str:
    """Encrypt `body` to the recipient and sign the whole envelope with our key."""
    if not is_known_type(header.type):
        raise e.UnknownMessageType(f"type {header.type!r} is not a Lintas message type")
    validate_body(header.type, body)
    plaintext = json.dumps(
        {
            "id": header.id,
            "type": header.type,
            "from": header.sender,
            "to": header.recipient,
            "body": body,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    jwe_header = {
        "alg": KEY_ALG,
        "enc": CONTENT_ALG,
        "kid": recipient_key.thumbprint(),
        "cty": PAYLOAD_CTY,
    }
    sealed = jwe.encrypt_compact(
        jwe_header, plaintext, recipient_key, algorithms=[KEY_ALG, CONTENT_ALG]
    )
    routing = json.dumps(header.as_json(sealed), separators=(",", ":")).encode()
    return jws.serialize_compact(
        {"alg": SIGN_ALG, "kid": signing.kid, "typ": ENVELOPE_TYP},
        routing,
        signing.private,
        algorithms=[SIGN_ALG],
    )


def open_payload(parsed: ParsedEnvelope, decryption_keys: Mapping[str, KeyPair]) -> OpenedMessage:
    """Decrypt the payload with our key named by its `kid` and check its binding."""
    protected = _b64json(parsed.payload_jwe.split(".")[0], "JWE protected header")
    if not isinstance(protected, dict):
        raise e.MalformedEnvelope("JWE protected header: must be a JSON object")
    if protected.get("alg") != KEY_ALG or protected.get("enc") != CONTENT_ALG:
        raise e.UnsupportedAlgorithm("payload: must be ECDH-ES with A256GCM")
    pair = decryption_keys.get(str(protected.get("kid")))
    if pair is None:
        raise e.UndecryptablePayload(
            f"payload is encrypted to key {protected.get('kid')!r}, which this node does not hold"
        )
    try:
        obj = jwe.decrypt_compact(
            parsed.payload_jwe, pair.private, algorithms=[KEY_ALG, CONTENT_ALG]
        )
        inner = json.loads(obj.plaintext or b"")
    except (JoseError, ValueError) as exc:
        raise e.UndecryptablePayload("payload cannot be decrypted or is not JSON") from exc
    if not isinstance(inner, dict):
        raise e.UndecryptablePayload("payload: must be a JSON object")
    h = parsed.header
    expected = {"id": h.id, "type": h.type, "from": h.sender, "to": h.recipient}
    for key, value in expected.items():
        if inner.get(key) != value:
            raise e.PayloadMismatch(
                f"payload {key} {inner.get(key)!r} differs from the routing header's {value!r}"
            )
    if not is_known_type(h.type):
        raise e.UnknownMessageType(f"type {h.type!r} is not a Lintas message type")
    body = inner.get("body")
    validate_body(h.type, body)
    assert isinstance(body, dict)
    return OpenedMessage(header=h, body=body)
