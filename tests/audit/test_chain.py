"""The hash chain's rules, on entries in memory."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from lintas.audit import GENESIS, AuditEntry, AuditError, Witness, seal, verify

T0 = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)


def chain(n: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    previous = GENESIS
    for i in range(1, n + 1):
        entry = seal(i, previous, T0 + timedelta(seconds=i), f"officer{i % 3}", "officer",
                     "check.submitted", "accepted", purpose="border control",
                     agreement="AUS-IDN-2026-01", message_ids=[f"m-{i}"],
                     details={"fingers": i % 10, "probe_sha256": "ab" * 32, "ok": True})
        out.append(entry)
        previous = entry.digest
    return out


def kinds(entries: list[AuditEntry], witnesses: tuple[Witness, ...] = ()) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in verify(entries, witnesses).problems]


def test_an_untouched_chain_is_intact_and_its_head_is_the_last_entry() -> None:
    entries = chain(6)
    result = verify(entries, [Witness(3, entries[2].digest), Witness(6, entries[5].digest)])
    assert result.intact and result.entries == 6
    assert result.head == Witness(6, entries[5].digest)
    assert entries[0].previous == GENESIS and entries[1].previous == entries[0].digest
    assert verify([]).intact and verify([]).head is None


def test_the_digest_covers_every_field() -> None:
    entry = chain(1)[0]
    for name, value in (("actor", "someone else"), ("role", "supervisor"),
                        ("action", "x"), ("outcome", "refused"), ("purpose", None),
                        ("agreement", "other"), ("message_ids", ("m-9",)),
                        ("details", {"fingers": 2}), ("at", T0), ("seq", 2),
                        ("previous", "1" * 64)):
        changed = dataclasses.replace(entry, **{name: value})
        assert changed.computed_digest() != entry.digest, name


def test_an_edited_entry_is_named() -> None:
    entries = chain(6)
    entries[3] = dataclasses.replace(entries[3], outcome="refused")
    assert kinds(entries) == [(4, "edited")]


def test_a_deleted_entry_is_named() -> None:
    entries = chain(6)
    del entries[2]
    assert kinds(entries) == [(3, "missing"), (4, "unlinked")]


def test_swapped_entries_are_named_as_moved() -> None:
    entries = chain(6)
    a, b = entries[1], entries[2]
    entries[1] = dataclasses.replace(b, seq=2)  # renumbered to hide the swap
    entries[2] = dataclasses.replace(a, seq=3)
    # Entry 4 still points at the digest of what was entry 3: reported too.
    assert kinds(entries) == [(2, "moved"), (3, "moved"), (4, "unlinked")]


def test_a_renumbered_deletion_breaks_the_link() -> None:
    entries = chain(6)
    del entries[2]
    entries[2:] = [dataclasses.replace(e, seq=e.seq - 1) for e in entries[2:]]
    problems = kinds(entries)
    assert (3, "moved") in problems or (3, "edited") in problems


def test_truncation_and_rewriting_are_caught_only_with_the_witness() -> None:
    entries = chain(6)
    witness = (Witness(5, entries[4].digest),)
    assert kinds(entries[:4]) == []  # alone, a shorter chain looks intact
    assert kinds(entries[:4], witness) == [(5, "truncated")]
    # History rewritten from entry 3 on, every digest recomputed: locally consistent...
    rewritten = entries[:2]
    for e in entries[2:]:
        rewritten.append(seal(e.seq, rewritten[-1].digest, e.at, "nobody", e.role, e.action,
                              e.outcome, e.purpose, e.agreement, e.message_ids, e.details))
    assert kinds(rewritten) == []
    assert kinds(rewritten, witness) == [(5, "rewritten")]  # ...but not to the hub


def test_bad_entries_are_refused_naming_the_field() -> None:
    with pytest.raises(AuditError, match="at: a time with its time zone"):
        seal(1, GENESIS, datetime(2026, 1, 1), "a", "officer", "x", "ok")
    with pytest.raises(AuditError, match="actor"):
        seal(1, GENESIS, T0, "", "officer", "x", "ok")
    with pytest.raises(AuditError, match=r"details\.image"):
        seal(1, GENESIS, T0, "a", "officer", "x", "ok", details={"image": b"\x00"})  # type: ignore[dict-item]
    with pytest.raises(AuditError, match=r"details\.score"):
        seal(1, GENESIS, T0, "a", "officer", "x", "ok", details={"score": float("nan")})
    with pytest.raises(AuditError, match="message_ids"):
        seal(1, GENESIS, T0, "a", "officer", "x", "ok", message_ids=[""])
