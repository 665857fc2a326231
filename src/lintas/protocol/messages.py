"""Message types and the shape of their (encrypted) bodies.

Only types listed here are relayed. `AGREEMENT_RULES` says, for each type, what the hub
requires of the agreement named in the routing header (docs/protocol.md):

- "ask": an agreement in force, with a direction from the sender to the recipient;
- "follow_up": an agreement registered between the two and not terminated (answers,
  disclosures and cancellations of checks already under way);
- absent: no agreement needed (diagnostics, and the agreements' own negotiation).

Only `check.request` counts against the quota.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lintas.protocol.errors import InvalidBody

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$")
MAX_DIAGNOSTIC_TEXT = 4096


def _text(body: dict[str, Any], allowed: set[str]) -> None:
    text = body.get("text")
    if not isinstance(text, str):
        raise InvalidBody("body.text: required, a string")
    if len(text) > MAX_DIAGNOSTIC_TEXT:
        raise InvalidBody(f"body.text: at most {MAX_DIAGNOSTIC_TEXT} characters")
    extra = set(body) - allowed
    if extra:
        raise InvalidBody(f"body: unexpected field(s) {sorted(extra)}")


def _ping(body: dict[str, Any]) -> None:
    _text(body, {"text", "reply"})
    if not isinstance(body.get("reply", True), bool):
        raise InvalidBody("body.reply: true or false")


def _pong(body: dict[str, Any]) -> None:
    _text(body, {"text"})


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
MAX_TEXT = 2000
MAX_FINGERS = 10
MAX_CANDIDATES = 20
MAX_DOCUMENT = 64 * 1024


def _fields(body: dict[str, Any], required: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    missing = required - set(body)
    if missing:
        raise InvalidBody(f"body.{sorted(missing)[0]}: required")
    extra = set(body) - required - optional
    if extra:
        raise InvalidBody(f"body: unexpected field(s) {sorted(extra)}")


def _string(value: object, where: str, max_len: int = MAX_TEXT, pattern: re.Pattern[str] | None
            = None) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidBody(f"{where}: a string of at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidBody(f"{where}: {value[:40]!r} is not in the expected form")
    return value


def _integer(value: object, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidBody(f"{where}: a whole number from {low} to {high}")
    return value


def _check_id(body: dict[str, Any]) -> None:
    _string(body.get("check"), "body.check", 36, _UUID)


def _probe(probe: object) -> None:
    if not isinstance(probe, dict):
        raise InvalidBody("body.probe: must be a JSON object")
    _fields(probe, set(), {"fingers", "target", "document"})
    if ("fingers" in probe) == ("document" in probe):
        raise InvalidBody("body.probe: either fingers or document")
    if "fingers" in probe:
        fingers = probe["fingers"]
        if not isinstance(fingers, list) or not 1 <= len(fingers) <= MAX_FINGERS:
            raise InvalidBody(f"body.probe.fingers: a list of 1 to {MAX_FINGERS} fingers")
        for i, f in enumerate(fingers):
            where = f"body.probe.fingers[{i}]"
            if not isinstance(f, dict):
                raise InvalidBody(f"{where}: must be a JSON object")
            _fields(f, {"position", "format", "data"})
            _integer(f["position"], where + ".position", 0, 10)
            _string(f["format"], where + ".format", 32)
            _string(f["data"], where + ".data", 1_000_000, _B64)
    if "target" in probe:
        target = probe["target"]
        if not isinstance(target, dict):
            raise InvalidBody("body.probe.target: must be a JSON object")
        _fields(target, {"reference"})
        _string(target["reference"], "body.probe.target.reference", 64)
    if "document" in probe:
        doc = probe["document"]
        if not isinstance(doc, dict):
            raise InvalidBody("body.probe.document: must be a JSON object")
        _fields(doc, set(), {"mrz", "number", "issuing_state"})
        for k, v in doc.items():
            _string(v, f"body.probe.document.{k}", 200)


def _check_request(body: dict[str, Any]) -> None:
    _fields(body, {"check", "purpose", "query_type", "max_candidates", "probe"})
    _check_id(body)
    _string(body["purpose"], "body.purpose", 64, _NAME)
    _string(body["query_type"], "body.query_type", 64, _NAME)
    _integer(body["max_candidates"], "body.max_candidates", 1, MAX_CANDIDATES)
    _probe(body["probe"])


def _check_answer(body: dict[str, Any]) -> None:
    _fields(body, {"check", "outcome", "candidates"}, {"error"})
    _check_id(body)
    if body["outcome"] not in ("hit", "no_hit", "refused"):
        raise InvalidBody("body.outcome: hit, no_hit or refused")
    cands = body["candidates"]
    if not isinstance(cands, list) or len(cands) > MAX_CANDIDATES:
        raise InvalidBody(f"body.candidates: a list of at most {MAX_CANDIDATES}")
    for i, c in enumerate(cands):
        if not isinstance(c, dict):
            raise InvalidBody(f"body.candidates[{i}]: must be a JSON object")
        _fields(c, {"candidate", "rank"}, {"fmr", "fpir"})
        _string(c["candidate"], f"body.candidates[{i}].candidate", 64)
        _integer(c["rank"], f"body.candidates[{i}].rank", 1, MAX_CANDIDATES)
        for rate in ("fmr", "fpir"):
            if rate in c and (isinstance(c[rate], bool) or not isinstance(c[rate], int | float)
                              or not 0 <= c[rate] <= 1):
                raise InvalidBody(f"body.candidates[{i}].{rate}: a rate, 0..1")
    if (body["outcome"] == "hit") != bool(cands):
        raise InvalidBody("body.candidates: a hit lists candidates, other outcomes none")
    if "error" in body:
        err = body["error"]
        if not isinstance(err, dict):
            raise InvalidBody("body.error: must be a JSON object")
        _fields(err, {"code", "message"})
        _string(err["code"], "body.error.code", 64)
        _string(err["message"], "body.error.message")


def _disclosure_request(body: dict[str, Any]) -> None:
    _fields(body, {"check", "candidate", "categories", "justification"})
    _check_id(body)
    _string(body["candidate"], "body.candidate", 64)
    cats = body["categories"]
    if not isinstance(cats, list) or not 1 <= len(cats) <= 32:
        raise InvalidBody("body.categories: a list of 1 to 32 data categories")
    for i, c in enumerate(cats):
        _string(c, f"body.categories[{i}]", 64, _NAME)
    _string(body["justification"], "body.justification")


def _disclosure(body: dict[str, Any]) -> None:
    _fields(body, {"check", "candidate", "decision", "data", "retain_days"}, {"reason"})
    _check_id(body)
    _string(body["candidate"], "body.candidate", 64)
    if body["decision"] not in ("approved", "partial", "denied"):
        raise InvalidBody("body.decision: approved, partial or denied")
    data = body["data"]
    if not isinstance(data, dict) or len(data) > 32:
        raise InvalidBody("body.data: a JSON object of at most 32 categories")
    for k, v in data.items():
        _string(k, "body.data (a category name)", 64, _NAME)
        _string(v, f"body.data.{k}")
    _integer(body["retain_days"], "body.retain_days", 0, 3650)
    if "reason" in body and body["reason"] is not None:
        _string(body["reason"], "body.reason")


def _cancel(body: dict[str, Any]) -> None:
    _fields(body, {"check", "reason"})
    _check_id(body)
    _string(body["reason"], "body.reason")


def _agreement_document(body: dict[str, Any]) -> None:
    _fields(body, {"document"})
    _string(body["document"], "body.document", MAX_DOCUMENT)


def _agreement_declined(body: dict[str, Any]) -> None:
    _fields(body, {"agreement", "reason"})
    _string(body["agreement"], "body.agreement", 64)
    _string(body["reason"], "body.reason")


def _agreement_status(body: dict[str, Any]) -> None:
    _fields(body, {"notice"})
    _string(body["notice"], "body.notice", MAX_DOCUMENT)


# type -> body validator
MESSAGE_TYPES: dict[str, Callable[[dict[str, Any]], None]] = {
    # A member checks its path to another member; the recipient node answers with a pong
    # unless the ping says "reply": false (a one-way diagnostic message).
    "diagnostic.ping": _ping,
    "diagnostic.pong": _pong,
    # The check workflow (docs/checks.md).
    "check.request": _check_request,
    "check.answer": _check_answer,
    "check.disclosure_request": _disclosure_request,
    "check.disclosure": _disclosure,
    "check.cancel": _cancel,
    # Negotiating agreements (docs/agreements.md): the proposal carries the proposer's
    # signed terms, the answer the countersigned document or a refusal; a status notice
    # suspends, resumes or terminates.
    "agreement.proposal": _agreement_document,
    "agreement.countersigned": _agreement_document,
    "agreement.declined": _agreement_declined,
    "agreement.status": _agreement_status,
}

AGREEMENT_RULES: dict[str, str] = {
    "check.request": "ask",
    "check.disclosure_request": "ask",
    "check.answer": "follow_up",
    "check.disclosure": "follow_up",
    "check.cancel": "follow_up",
}
QUOTA_COUNTED = frozenset({"check.request"})


def is_known_type(message_type: str) -> bool:
    return message_type in MESSAGE_TYPES


def validate_body(message_type: str, body: object) -> None:
    if not isinstance(body, dict):
        raise InvalidBody("body: must be a JSON object")
    MESSAGE_TYPES[message_type](body)
