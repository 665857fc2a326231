"""Message types and the shape of their (encrypted) bodies.

Only types listed here are relayed; later issues add the check workflow's types.
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


# type -> body validator
MESSAGE_TYPES: dict[str, Callable[[dict[str, Any]], None]] = {
    # A member checks its path to another member; the recipient node answers with a pong
    # unless the ping says "reply": false (a one-way diagnostic message).
    "diagnostic.ping": _ping,
    "diagnostic.pong": _pong,
}


def is_known_type(message_type: str) -> bool:
    return message_type in MESSAGE_TYPES


def validate_body(message_type: str, body: object) -> None:
    if not isinstance(body, dict):
        raise InvalidBody("body: must be a JSON object")
    MESSAGE_TYPES[message_type](body)
