"""The audit trail as a hash chain: each entry's digest covers its content and the digest
of the entry before it, so that editing, deleting, reordering or inserting an entry
breaks the chain from that point on.

A node could still rewrite its whole history from some entry onwards and recompute
every digest after it. That is what the witness is for: the node publishes its chain
head (sequence number and digest) to the hub at intervals, the hub keeps the heads, and
`verify` checks the chain against them. A rewrite before a witnessed head, or a log
shorter than one, is then caught.

Entries never hold biometric data: who, in which role, when, what, for which purpose
and agreement, the message ids, the outcome, and short details (counts, digests).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

GENESIS = "0" * 64  # the "previous digest" of the first entry
Detail = str | int | float | bool | None


class AuditError(ValueError):
    """An entry that cannot be recorded as given (the message names the field)."""


@dataclass(frozen=True)
class AuditEntry:
    """One action. `seq` counts from 1 without gaps; `digest` seals the entry and links
    it to `previous` (the digest of entry seq - 1, or GENESIS)."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    outcome: str
    purpose: str | None = None
    agreement: str | None = None
    message_ids: tuple[str, ...] = ()
    details: Mapping[str, Detail] = field(default_factory=dict)
    previous: str = GENESIS
    digest: str = ""

    def content(self) -> bytes:
        """The canonical bytes the digest covers: every field but the digest itself, as
        JSON with sorted keys, no spaces, UTF-8, the time in UTC to the microsecond."""
        return json.dumps({
            "seq": self.seq,
            "at": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": self.actor, "role": self.role, "action": self.action,
            "outcome": self.outcome, "purpose": self.purpose, "agreement": self.agreement,
            "message_ids": list(self.message_ids), "details": dict(self.details),
            "previous": self.previous,
        }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def computed_digest(self) -> str:
        return hashlib.sha256(self.content()).hexdigest()


MAX_TEXT = 200
MAX_DETAILS = 32


def seal(seq: int, previous: str, at: datetime, actor: str, role: str, action: str,
         outcome: str, purpose: str | None = None, agreement: str | None = None,
         message_ids: Iterable[str] = (), details: Mapping[str, Detail] | None = None
         ) -> AuditEntry:
    """A new entry after the one whose digest is `previous`, its digest computed."""
    if at.tzinfo is None:
        raise AuditError("at: a time with its time zone")
    for name, value in (("actor", actor), ("role", role), ("action", action),
                        ("outcome", outcome), ("purpose", purpose), ("agreement", agreement)):
        if value is None and name in ("purpose", "agreement"):
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            raise AuditError(f"{name}: text of 1 to {MAX_TEXT} characters")
    ids = tuple(message_ids)
    if any(not isinstance(i, str) or not i or len(i) > MAX_TEXT for i in ids):
        raise AuditError(f"message_ids: texts of 1 to {MAX_TEXT} characters")
    items = dict(details or {})
    if len(items) > MAX_DETAILS:
        raise AuditError(f"details: at most {MAX_DETAILS} items")
    for key, item in items.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise AuditError("details: keys are texts of 1 to 64 characters")
        if not isinstance(item, str | int | float | bool | type(None)) or (
                isinstance(item, str) and len(item) > MAX_TEXT) or (
                isinstance(item, float) and not math.isfinite(item)):
            raise AuditError(f"details.{key}: a number, a yes/no, or text of at most "
                             f"{MAX_TEXT} characters")
    entry = AuditEntry(seq, at.astimezone(UTC), actor, role, action, outcome, purpose,
                       agreement, ids, items, previous)
    return replace(entry, digest=entry.computed_digest())


@dataclass(frozen=True)
class Witness:
    """A chain head the hub recorded: entry `seq` had digest `digest`."""

    seq: int
    digest: str


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # edited, moved, missing, unlinked, rewritten, truncated
    message: str


@dataclass(frozen=True)
class Verification:
    entries: int
    head: Witness | None
    problems: tuple[Problem, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(entries: Iterable[AuditEntry], witnesses: Iterable[Witness] = ()) -> Verification:
    """Check a chain, entries in sequence order, against itself and the witnessed heads.

    Every problem is reported with the entry it concerns: an entry whose content no
    longer matches its digest (edited; or moved, when it matches under another entry's
    number), a gap in the numbering (missing), an entry not linked to the one before it
    (unlinked: something was removed or inserted there), an entry that differs from what
    the hub witnessed (rewritten), and a log that ends before a witnessed head
    (truncated)."""
    chain = list(entries)
    problems: list[Problem] = []
    by_seq = {e.seq: e for e in chain}
    bad = [e for e in chain if e.computed_digest() != e.digest]
    bad_seqs = {e.seq for e in bad}
    for e in bad:
        moved_from = next((s for s in sorted(bad_seqs - {e.seq})
                           if replace(e, seq=s).computed_digest()
                           == e.digest), None)
        if moved_from is not None:
            problems.append(Problem(e.seq, "moved", f"entry {e.seq} holds entry "
                                                     f"{moved_from}'s content: reordered"))
        else:
            problems.append(Problem(e.seq, "edited", f"entry {e.seq} does not match its "
                                                      "digest: its content was changed"))
    expected_seq, previous = 1, GENESIS
    for e in chain:
        if e.seq > expected_seq:
            missing = (f"entry {expected_seq}" if e.seq == expected_seq + 1
                       else f"entries {expected_seq}-{e.seq - 1}")
            problems.append(Problem(expected_seq, "missing", f"{missing} missing: deleted"))
        elif e.seq < expected_seq:
            problems.append(Problem(e.seq, "moved", f"entry {e.seq} out of sequence"))
        if e.previous != previous and e.seq not in bad_seqs:
            problems.append(Problem(e.seq, "unlinked", f"entry {e.seq} does not follow the "
                                                        "entry before it: entries were "
                                                        "removed, inserted or reordered"))
        expected_seq, previous = max(expected_seq, e.seq + 1), e.digest
    last = chain[-1].seq if chain else 0
    for w in sorted(witnesses, key=lambda w: w.seq):
        if w.seq > last:
            problems.append(Problem(w.seq, "truncated", f"the hub witnessed entry {w.seq}, "
                                                         f"but the log ends at {last}: "
                                                         "entries were cut off"))
        elif w.seq in by_seq and by_seq[w.seq].digest != w.digest:
            problems.append(Problem(w.seq, "rewritten", f"entry {w.seq} differs from the one "
                                                         "the hub witnessed: history was "
                                                         "rewritten"))
    problems.sort(key=lambda p: (p.seq, p.kind))
    head = Witness(chain[-1].seq, chain[-1].digest) if chain else None
    return Verification(len(chain), head, tuple(problems))
