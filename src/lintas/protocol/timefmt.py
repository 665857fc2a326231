"""Timestamps on the wire: RFC 3339, UTC, whole seconds, e.g. `2026-11-23T18:00:00Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object, field: str) -> datetime:
    from lintas.protocol.errors import MalformedEnvelope

    if not isinstance(value, str) or not value.endswith("Z") or len(value) != 20:
        raise MalformedEnvelope(f"{field}: expected a UTC time like 2026-11-23T18:00:00Z")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedEnvelope(f"{field}: {exc}") from exc
