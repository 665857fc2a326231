"""Bilateral agreements: their terms, their two signatures, their status notices.

An agreement is proposed by one member and countersigned by the other. Its terms are one
canonical JSON document; each party signs those exact bytes with its node signing key,
and the two signatures travel together as a JWS in the General JSON Serialization
(RFC 7515 section 7.2.1): one payload, one signature object per party. Anyone holding the
member directory can check both signatures; the hub does before it registers the
agreement, and each node does when the document reaches it.

    terms (payload, canonical JSON):
      {"v": 1, "id", "title", "proposer", "counterparty",
       "valid_from": "YYYY-MM-DD", "valid_until": "YYYY-MM-DD",
       "directions": [{"requester", "responder", "purposes": [...],
                       "query_types": [...], "response_mode", "max_candidates",
                       "daily_quota", "annual_quota", "disclosure": [...],
                       "retention_days", "false_hits_per_million"?}, ...]}
                                                        # one direction, or both
    ("false_hits_per_million" is left out at its default, 1000)
    signature protected header: {"alg": "Ed25519", "kid", "typ": "lintas-agreement+jws",
                                 "member": <party>, "iat": <RFC 3339 time>}

Suspension, resumption and termination are status notices: a compact JWS (typ
`lintas-agreement-status+jws`) signed by one party, naming the agreement and the terms'
SHA-256, with a reason. Either party may suspend, resume or terminate; termination is
final. docs/agreements.md is the normative description.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from lintas.crypto import KeyPair
from lintas.protocol.directory import Directory
from lintas.protocol.envelope import CLOCK_SKEW, SIGN_ALG, VERIFY_ALGS
from lintas.protocol.errors import MalformedEnvelope
from lintas.protocol.members import is_member_code
from lintas.protocol.timefmt import format_time, parse_time

AGREEMENT_TYP = "lintas-agreement+jws"
STATUS_TYP = "lintas-agreement-status+jws"

PURPOSES: tuple[str, ...] = (
    "border_control",          # border control
    "visa_processing",         # visa processing
    "asylum",                  # asylum / refugee status determination
    "victim_identification",   # identification of trafficking victims
    "return_readmission",      # return and readmission
    "investigation",           # investigation of smuggling or trafficking
)
QUERY_TYPES: tuple[str, ...] = (
    "fingerprint_1n",    # a fingerprint search of the partner's gallery
    "fingerprint_1to1",  # a fingerprint verification against one record or document
    "document",          # a travel-document check against the lost/stolen/revoked register
)
RESPONSE_MODES: tuple[str, ...] = ("automatic", "review")
# What the responder may disclose at step 2, by category (docs/agreements.md).
DATA_CATEGORIES: tuple[str, ...] = (
    "name", "date_of_birth", "sex", "nationality", "travel_documents", "enrolment",
    "immigration_status",
)
STATUSES: tuple[str, ...] = ("active", "suspended", "terminated")

MAX_CANDIDATES = 20
MAX_QUOTA = 10_000_000
MAX_RETENTION_DAYS = 3650
# A fingerprint hit is a candidate whose false positive identification rate (FPIR: the
# chance that a search for someone not enrolled turns up a candidate this strong) is at
# most this many per million searches. A whole number, so that the canonical terms hold
# no floating-point text; 1000 is the node's rule without an agreed one (FPIR 0.1 %).
DEFAULT_FALSE_HITS_PER_MILLION = 1000
MAX_FALSE_HITS_PER_MILLION = 10_000  # FPIR 1 %: looser would make most hits coincidences
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
MAX_TITLE = 200
MAX_REASON = 500


# Our two private header parameters (RFC 7515 section 4.3), declared so that joserfc
# accepts them: which party signed, and when.
_REGISTRY = JWSRegistry(
    header_registry={"member": HeaderParameter("signing party (member code)", "str"),
                     "iat": HeaderParameter("signing time, RFC 3339 UTC", "str")},
    algorithms=list(VERIFY_ALGS))


class AgreementError(ValueError):
    """A malformed, inconsistent or wrongly signed agreement; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Direction:
    """What `requester` may ask of `responder` under the agreement."""

    requester: str
    responder: str
    purposes: tuple[str, ...]
    query_types: tuple[str, ...]
    response_mode: str = "automatic"
    max_candidates: int = 5
    daily_quota: int = 100
    annual_quota: int = 10_000
    disclosure: tuple[str, ...] = ()
    retention_days: int = 30
    false_hits_per_million: int = DEFAULT_FALSE_HITS_PER_MILLION

    @property
    def hit_fpir(self) -> float:
        """The search rate at which the responder reports a candidate as a hit: how
        often a search for someone it has not enrolled may turn one up."""
        return self.false_hits_per_million / 1_000_000

    def as_json(self) -> dict[str, Any]:
        doc = {"requester": self.requester, "responder": self.responder,
               "purposes": list(self.purposes), "query_types": list(self.query_types),
               "response_mode": self.response_mode, "max_candidates": self.max_candidates,
               "daily_quota": self.daily_quota, "annual_quota": self.annual_quota,
               "disclosure": list(self.disclosure), "retention_days": self.retention_days}
        # Left out at its default, so that terms signed before the field existed keep
        # their canonical bytes (and signatures).
        if self.false_hits_per_million != DEFAULT_FALSE_HITS_PER_MILLION:
            doc["false_hits_per_million"] = self.false_hits_per_million
        return doc


@dataclass(frozen=True)
class Agreement:
    id: str
    title: str
    proposer: str
    counterparty: str
    valid_from: date
    valid_until: date
    directions: tuple[Direction, ...]

    def __post_init__(self) -> None:
        check_terms(self)

    @property
    def parties(self) -> tuple[str, str]:
        return self.proposer, self.counterparty

    def direction(self, requester: str, responder: str) -> Direction | None:
        for d in self.directions:
            if d.requester == requester and d.responder == responder:
                return d
        return None

    def other(self, member: str) -> str:
        if member == self.proposer:
            return self.counterparty
        if member == self.counterparty:
            return self.proposer
        raise AgreementError("member", f"{member} is not a party to agreement {self.id}")

    def in_force_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_until

    def as_json(self) -> dict[str, Any]:
        return {"v": 1, "id": self.id, "title": self.title, "proposer": self.proposer,
                "counterparty": self.counterparty, "valid_from": self.valid_from.isoformat(),
                "valid_until": self.valid_until.isoformat(),
                "directions": [d.as_json() for d in self.directions]}

    def canonical(self) -> bytes:
        """The exact bytes both parties sign."""
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @staticmethod
    def from_json(doc: object) -> Agreement:
        """Parse and validate terms; every error names the field."""
        if not isinstance(doc, Mapping):
            raise AgreementError("terms", "must be a JSON object")
        _only(doc, "terms", {"v", "id", "title", "proposer", "counterparty", "valid_from",
                             "valid_until", "directions"})
        if doc.get("v", 1) != 1:
            raise AgreementError("v", "only version 1 is known")
        raw_dirs = doc.get("directions")
        if not isinstance(raw_dirs, list) or not 1 <= len(raw_dirs) <= 2:
            raise AgreementError("directions", "a list of one or two directions")
        dirs = tuple(_direction(d, f"directions[{i}]") for i, d in enumerate(raw_dirs))
        return Agreement(
            id=_str(doc, "id"), title=_str(doc, "title"), proposer=_str(doc, "proposer"),
            counterparty=_str(doc, "counterparty"),
            valid_from=_date(doc, "valid_from"), valid_until=_date(doc, "valid_until"),
            directions=dirs)


def _only(doc: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    extra = set(doc) - allowed
    if extra:
        raise AgreementError(where, f"unexpected field(s) {sorted(extra)}")


def _str(doc: Mapping[str, Any], name: str, where: str = "") -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise AgreementError(where + name, "required, a string")
    return value


def _int(doc: Mapping[str, Any], name: str, where: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AgreementError(where + name, "required, a whole number")
    return value


def _list(doc: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = doc.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AgreementError(where + name, "required, a list of strings")
    return tuple(value)


def _date(doc: Mapping[str, Any], name: str) -> date:
    value = doc.get(name)
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise AgreementError(name, f"{value!r} is not a date like 2027-01-31") from None


def _direction(doc: object, where: str) -> Direction:
    if not isinstance(doc, Mapping):
        raise AgreementError(where, "must be a JSON object")
    p = where + "."
    _only(doc, where, {"requester", "responder", "purposes", "query_types", "response_mode",
                       "max_candidates", "daily_quota", "annual_quota", "disclosure",
                       "retention_days", "false_hits_per_million"})
    hits = (_int(doc, "false_hits_per_million", p) if "false_hits_per_million" in doc
            else DEFAULT_FALSE_HITS_PER_MILLION)
    return Direction(
        requester=_str(doc, "requester", p), responder=_str(doc, "responder", p),
        purposes=_list(doc, "purposes", p), query_types=_list(doc, "query_types", p),
        response_mode=_str(doc, "response_mode", p),
        max_candidates=_int(doc, "max_candidates", p), daily_quota=_int(doc, "daily_quota", p),
        annual_quota=_int(doc, "annual_quota", p), disclosure=_list(doc, "disclosure", p),
        retention_days=_int(doc, "retention_days", p), false_hits_per_million=hits)


def _choices(values: Sequence[str], allowed: tuple[str, ...], name: str,
             empty_ok: bool = False) -> None:
    if not values and not empty_ok:
        raise AgreementError(name, f"at least one of {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise AgreementError(name, f"{v!r} is not one of {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise AgreementError(name, "lists a value twice")


def check_terms(a: Agreement) -> None:
    """Every rule of the terms, with an error naming the field."""
    if not _ID.fullmatch(a.id):
        raise AgreementError("id", f"{a.id!r}: 3-64 characters A-Z a-z 0-9 . _ - (e.g. "
                                   "AUS-IDN-2027-01)")
    if not a.title.strip() or len(a.title) > MAX_TITLE:
        raise AgreementError("title", f"1-{MAX_TITLE} characters")
    for name, code in (("proposer", a.proposer), ("counterparty", a.counterparty)):
        if not is_member_code(code):
            raise AgreementError(name, f"{code!r} is not a member code (e.g. IDN)")
    if a.proposer == a.counterparty:
        raise AgreementError("counterparty", "an agreement needs two different members")
    if a.valid_until < a.valid_from:
        raise AgreementError("valid_until", "is before valid_from")
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(a.directions):
        p = f"directions[{i}]."
        if {d.requester, d.responder} != {a.proposer, a.counterparty}:
            raise AgreementError(p + "requester", f"{d.requester}→{d.responder} is not "
                                 f"between the parties {a.proposer} and {a.counterparty}")
        if (d.requester, d.responder) in seen:
            raise AgreementError(p + "requester", f"{d.requester}→{d.responder} appears twice")
        seen.add((d.requester, d.responder))
        _choices(d.purposes, PURPOSES, p + "purposes")
        _choices(d.query_types, QUERY_TYPES, p + "query_types")
        _choices(d.disclosure, DATA_CATEGORIES, p + "disclosure", empty_ok=True)
        if d.response_mode not in RESPONSE_MODES:
            raise AgreementError(p + "response_mode", f"{d.response_mode!r} is not one of "
                                 f"{', '.join(RESPONSE_MODES)}")
        if not 1 <= d.max_candidates <= MAX_CANDIDATES:
            raise AgreementError(p + "max_candidates", f"from 1 to {MAX_CANDIDATES}")
        if not 1 <= d.daily_quota <= MAX_QUOTA:
            raise AgreementError(p + "daily_quota", f"from 1 to {MAX_QUOTA}")
        if not d.daily_quota <= d.annual_quota <= MAX_QUOTA:
            raise AgreementError(p + "annual_quota", f"from daily_quota ({d.daily_quota}) "
                                 f"to {MAX_QUOTA}")
        if not 0 <= d.retention_days <= MAX_RETENTION_DAYS:
            raise AgreementError(p + "retention_days", f"from 0 to {MAX_RETENTION_DAYS}")
        if isinstance(d.false_hits_per_million, bool) or \
                not isinstance(d.false_hits_per_million, int) or \
                not 1 <= d.false_hits_per_million <= MAX_FALSE_HITS_PER_MILLION:
            raise AgreementError(p + "false_hits_per_million",
                                 f"a whole number from 1 to {MAX_FALSE_HITS_PER_MILLION:,} "
                                 f"(default {DEFAULT_FALSE_HITS_PER_MILLION:,}: FPIR 0.1 %)")
    if not a.directions:
        raise AgreementError("directions", "a list of one or two directions")


# --- signatures -----------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    member: str
    kid: str
    signed_at: datetime


@dataclass(frozen=True)
class SignedAgreement:
    """Terms with one signature (proposed) or both (countersigned)."""

    agreement: Agreement
    document: dict[str, Any]  # the JWS General JSON Serialization
    signatures: tuple[Signature, ...] = field(default=())

    @property
    def countersigned(self) -> bool:
        return {s.member for s in self.signatures} == set(self.agreement.parties)

    def serialize(self) -> str:
        return json.dumps(self.document, sort_keys=True, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign_one(payload: bytes, key: KeyPair, member: str, now: datetime) -> dict[str, Any]:
    header = {"alg": SIGN_ALG, "kid": key.kid, "typ": AGREEMENT_TYP, "member": member,
              "iat": format_time(now)}
    flat = jws.serialize_json({"protected": header}, payload, key.private,
                              algorithms=[SIGN_ALG], registry=_REGISTRY)
    return {"protected": flat["protected"], "signature": flat["signature"]}


def propose(agreement: Agreement, key: KeyPair, now: datetime | None = None) -> SignedAgreement:
    """The proposer's signature over the terms."""
    now = now or datetime.now(UTC)
    sig = _sign_one(agreement.canonical(), key, agreement.proposer, now)
    doc = {"payload": _b64(agreement.canonical()), "signatures": [sig]}
    return SignedAgreement(agreement, doc,
                           (Signature(agreement.proposer, key.kid, now.replace(microsecond=0)),))


def countersign(signed: SignedAgreement, key: KeyPair,
                now: datetime | None = None) -> SignedAgreement:
    """Add the counterparty's signature over the same bytes."""
    now = now or datetime.now(UTC)
    a = signed.agreement
    if signed.countersigned:
        raise AgreementError("signatures", f"agreement {a.id} is already countersigned")
    sig = _sign_one(a.canonical(), key, a.counterparty, now)
    doc = {"payload": signed.document["payload"],
           "signatures": [*signed.document["signatures"], sig]}
    return SignedAgreement(a, doc, (*signed.signatures,
                                    Signature(a.counterparty, key.kid, now.replace(microsecond=0))))


def _decode_b64(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", value):
        raise AgreementError(name, "base64url text expected")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise AgreementError(name, "base64url text expected") from None


def terms_of(document: str) -> Agreement:
    """The terms of a signed document already verified (e.g. when it was stored),
    without checking its signatures again."""
    payload = json.loads(document)["payload"]
    return Agreement.from_json(json.loads(_decode_b64(payload, "payload")))


def verify(document: str | Mapping[str, Any], directory: Directory,
           require_countersigned: bool = True) -> SignedAgreement:
    """Check the terms and each party's signature against the member directory: each
    signature must be made by a signing key the directory lists for that party, valid
    when the signature says it was made. Raises AgreementError naming what is wrong."""
    if isinstance(document, str):
        try:
            doc = json.loads(document)
        except ValueError:
            raise AgreementError("document", "is not JSON") from None
    else:
        doc = dict(document)
    if not isinstance(doc, dict) or set(doc) != {"payload", "signatures"}:
        raise AgreementError("document", "a JWS General JSON Serialization: exactly "
                                         "'payload' and 'signatures'")
    payload = _decode_b64(doc["payload"], "payload")
    try:
        terms = json.loads(payload)
    except ValueError:
        raise AgreementError("payload", "the signed terms are not JSON") from None
    agreement = Agreement.from_json(terms)
    if agreement.canonical() != payload:
        raise AgreementError("payload", "the signed terms are not in canonical form")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or not 1 <= len(sigs) <= 2:
        raise AgreementError("signatures", "one or two signatures")
    found: list[Signature] = []
    for i, sig in enumerate(sigs):
        found.append(_verify_one(sig, doc["payload"], agreement, directory, f"signatures[{i}]"))
    members = [s.member for s in found]
    if len(set(members)) != len(members):
        raise AgreementError("signatures", "a party signed twice")
    if members[0] != agreement.proposer:
        raise AgreementError("signatures[0]", f"the first signature must be the proposer's "
                                              f"({agreement.proposer})")
    signed = SignedAgreement(agreement, doc, tuple(found))
    if require_countersigned and not signed.countersigned:
        raise AgreementError("signatures", f"agreement {agreement.id} is not countersigned by "
                                           f"{agreement.counterparty}")
    return signed


def _verify_one(sig: object, payload_b64: str, agreement: Agreement, directory: Directory,
                where: str) -> Signature:
    if not isinstance(sig, dict) or set(sig) != {"protected", "signature"}:
        raise AgreementError(where, "exactly 'protected' and 'signature'")
    try:
        header = json.loads(_decode_b64(sig["protected"], where + ".protected"))
    except ValueError:
        raise AgreementError(where + ".protected", "is not JSON") from None
    if not isinstance(header, dict) or header.get("typ") != AGREEMENT_TYP:
        raise AgreementError(where + ".protected.typ", f"must be {AGREEMENT_TYP}")
    member, kid = header.get("member"), header.get("kid")
    if member not in agreement.parties:
        raise AgreementError(where + ".protected.member", f"{member!r} is not a party")
    try:
        signed_at = parse_time(header.get("iat"), where + ".protected.iat")
    except MalformedEnvelope as exc:
        raise AgreementError(where + ".protected.iat", exc.message) from None
    entry = directory.members.get(str(member))
    # The protocol's clock skew: a key registered "now" may sign a moment earlier.
    key = entry.key(str(kid), "sig", signed_at, CLOCK_SKEW) if entry is not None else None
    if key is None:
        raise AgreementError(where + ".protected.kid", f"{kid!r} is not a signing key of "
                                                       f"{member} at {format_time(signed_at)}")
    flat = {"payload": payload_b64, "protected": sig["protected"], "signature": sig["signature"]}
    try:
        jws.deserialize_json(flat, key.public(), algorithms=list(VERIFY_ALGS),  # type: ignore[call-overload]
                             registry=_REGISTRY)
    except (JoseError, ValueError):
        raise AgreementError(where + ".signature", f"does not verify with {member}'s key "
                                                   f"{kid}") from None
    return Signature(str(member), str(kid), signed_at)


# --- status notices -------------------------------------------------------------------


@dataclass(frozen=True)
class StatusNotice:
    agreement: str
    terms_sha256: str
    status: str
    reason: str
    by: str
    at: datetime
    document: str  # the compact JWS


def status_notice(signed: SignedAgreement, status: str, reason: str, member: str,
                  key: KeyPair, now: datetime | None = None) -> StatusNotice:
    """A party's signed notice suspending, resuming or terminating the agreement."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    _check_status(signed.agreement, status, reason, member)
    body = {"agreement": signed.agreement.id, "terms_sha256": signed.agreement.digest(),
            "status": status, "reason": reason.strip(), "by": member, "at": format_time(now)}
    doc = jws.serialize_compact({"alg": SIGN_ALG, "kid": key.kid, "typ": STATUS_TYP},
                                json.dumps(body, sort_keys=True, separators=(",", ":")),
                                key.private, algorithms=[SIGN_ALG])
    return StatusNotice(signed.agreement.id, signed.agreement.digest(), status, reason.strip(),
                        member, now, doc)


def _check_status(agreement: Agreement, status: str, reason: str, member: str) -> None:
    if status not in STATUSES:
        raise AgreementError("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    if member not in agreement.parties:
        raise AgreementError("by", f"{member} is not a party to agreement {agreement.id}")
    if status != "active" and not reason.strip():
        raise AgreementError("reason", f"a {status} agreement must say why")
    if len(reason) > MAX_REASON:
        raise AgreementError("reason", f"at most {MAX_REASON} characters")


def verify_status(document: str, signed: SignedAgreement, directory: Directory) -> StatusNotice:
    """Check a status notice: signed by a party with a key valid when it says it was
    made, for these very terms."""
    try:
        parts = document.split(".")
        if len(parts) != 3:
            raise ValueError
        header = json.loads(_decode_b64(parts[0], "notice.protected"))
        body = json.loads(_decode_b64(parts[1], "notice.payload"))
    except ValueError:
        raise AgreementError("notice", "a compact JWS with JSON header and payload") from None
    if not isinstance(header, dict) or header.get("typ") != STATUS_TYP:
        raise AgreementError("notice.typ", f"must be {STATUS_TYP}")
    if not isinstance(body, dict) or set(body) != {"agreement", "terms_sha256", "status",
                                                   "reason", "by", "at"}:
        raise AgreementError("notice", "agreement, terms_sha256, status, reason, by, at")
    a = signed.agreement
    if body["agreement"] != a.id or body["terms_sha256"] != a.digest():
        raise AgreementError("notice.agreement", f"the notice is not about agreement {a.id} "
                                                 "as registered")
    try:
        at = parse_time(body["at"], "notice.at")
    except MalformedEnvelope as exc:
        raise AgreementError("notice.at", exc.message) from None
    by, status, reason = str(body["by"]), str(body["status"]), str(body["reason"])
    _check_status(a, status, reason, by)
    entry = directory.members.get(by)
    key = (entry.key(str(header.get("kid")), "sig", at, CLOCK_SKEW) if entry is not None
           else None)
    if key is None:
        raise AgreementError("notice.kid", f"not a signing key of {by} at {format_time(at)}")
    try:
        jws.deserialize_compact(document, key.public(), algorithms=list(VERIFY_ALGS))
    except (JoseError, ValueError):
        raise AgreementError("notice.signature", f"does not verify with {by}'s key") from None
    return StatusNotice(a.id, a.digest(), status, reason, by, at, document)


def next_status(current: str, notice: StatusNotice) -> str:
    """The status after `notice`; termination is final."""
    if current == "terminated":
        raise AgreementError("status", f"agreement {notice.agreement} is terminated; it "
                                       "cannot be changed")
    if current == notice.status:
        raise AgreementError("status", f"agreement {notice.agreement} is already {current}")
    return notice.status


def effective_state(status: str, agreement: Agreement, now: datetime) -> str:
    """active | suspended | terminated | not_yet_valid | expired — what applies now."""
    if status != "active":
        return status
    today = now.astimezone(UTC).date()
    if today < agreement.valid_from:
        return "not_yet_valid"
    if today > agreement.valid_until:
        return "expired"
    return "active"
