"""The node's fingerprint gallery: enrolled persons, their finger templates, 1:N search.

    Gallery(db)
      .enrol(reference, fingers, label=None, replace=False, partial=False) -> EnrolResult
      .update(reference, fingers, partial=False)  -> EnrolResult  (replaces those positions)
      .delete(reference)                          -> fingers removed
      .get(reference)                             -> PersonRecord | None
      .persons(limit, offset) / .count() / .finger_count()
      .iter_templates()                           -> GalleryTemplate, for a 1:N index
      .prepare_probe(fingers)                     -> ({position: phases}, rejections)
      .search(probe, limit=10, max_fpir=None)     -> [Candidate], best first

A person is known by `reference`, the national record id; the gallery holds nothing else
personal (an optional free-text label at most). `fingers` is a list of (finger position
1-10, sample): a `FingerImage` (quality-checked with NFIQ 2, then extracted), a
`FingerView` or a one-view `MinutiaeTemplate` (minutiae already extracted elsewhere, e.g.
an ANSI/NIST Type-9 record: no image, so only the minutiae count is checked). Each
position's impressions are numbered 1, 2, ... in the order given. Templates are stored
as ISO/IEC 19794-2:2011 records; images are never stored. A finger enrolled or probed
from an image is extracted at MINDTCT's four grid phases
(`lintas.biometrics.extraction.extract_phases`), stored as views 0-3 of its record, and
compared phase by phase (`lintas.biometrics.matching.compare_phases`); one given as
minutiae has a single view and is compared by view 0. The 1:N index uses view 0.

Enrolment is all-or-nothing per person: every finger is checked before anything is
written, the person and fingers are written in one transaction, and a person with no
acceptable finger is never created. By default one rejected finger refuses the whole
enrolment (the officer recaptures it); with `partial=True` (bulk imports) the acceptable
fingers are enrolled and the rejected ones reported.

Listeners registered with `on_enrol` / `on_delete` are called after the commit, so an
in-memory 1:N index can follow the gallery incrementally; an exception raised by a
listener reaches the caller, but the write it follows is already committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lintas.biometrics import formats
from lintas.biometrics.extraction import extract_phases
from lintas.biometrics.formats.iso19794_2_2011 import read_minutiae
from lintas.biometrics.images import FingerImage, ImageError
from lintas.biometrics.index import IndexShard, recurring, search_shards
from lintas.biometrics.matching import (
    PHASES,
    Calibrations,
    Comparison,
    MatchError,
    MatchTemplate,
    Phases,
    Template,
    compare_fingers,
    prepare,
    prepare_phases,
    shipped,
)
from lintas.biometrics.minutiae import PPCM_500_PPI, FingerView, MinutiaeTemplate
from lintas.biometrics.quality import DEFAULT_ADVICE, Purpose, QualityPolicy, nfiq2
from lintas.node.audit import AuditLog
from lintas.node.models import GalleryChange, GalleryFinger, GalleryPerson, Setting
from lintas.node.users import Principal, require_role
from lintas.storage import Database, utcnow

MIN_MINUTIAE = 8
MAX_REFERENCE = 64
MAX_LABEL = 200
MAX_FINGERS_PER_PERSON = 100
TEMPLATE_FORMAT = formats.ISO_2011
PLAUSIBLE_MARGIN = 2.0  # decades of FMR: see _to_compare
INDEX_BATCH = 5000  # fingers read and indexed at once when the index is built
JOURNAL_LOOKBACK = 1000  # journal ids re-read behind the newest seen (sync_index)
JOURNAL_BATCH = 20000  # journal entries applied by one sync_index call at most
JOURNAL_KEEP = timedelta(days=1)
CALIBRATION_SETTING = "calibration"  # the node's own tables (settings row), if any

FINGER_NAMES = {1: "right thumb", 2: "right index", 3: "right middle", 4: "right ring",
                5: "right little", 6: "left thumb", 7: "left index", 8: "left middle",
                9: "left ring", 10: "left little"}

Sample = FingerImage | FingerView | MinutiaeTemplate


def finger_name(position: int) -> str:
    return f"finger {position} ({FINGER_NAMES[position]})" if position in FINGER_NAMES \
        else f"finger {position}"


class GalleryError(ValueError):
    """A request the gallery refuses; the message names the field and the problem."""


class DuplicateReference(GalleryError):
    pass


class UnknownReference(GalleryError):
    pass


@dataclass(frozen=True)
class Rejection:
    """A finger not enrolled (or not used as a probe), with the reason for the officer."""

    index: int  # 0-based, in the list of fingers given
    position: int
    reason: str

    def __str__(self) -> str:
        return f"{finger_name(self.position)}: {self.reason}"


@dataclass(frozen=True)
class EnrolledFinger:
    id: int
    position: int
    impression: int
    nfiq2: int | None
    minutiae_count: int


@dataclass(frozen=True)
class EnrolResult:
    reference: str
    enrolled: bool  # False: nothing was written
    fingers: tuple[EnrolledFinger, ...]
    rejected: tuple[Rejection, ...]
    removed: int = 0  # fingers replaced (enrol with replace=True, or update)


@dataclass(frozen=True)
class FingerRecord:
    id: int
    position: int
    impression: int
    nfiq2: int | None
    minutiae_count: int
    created_at: datetime


@dataclass(frozen=True)
class PersonRecord:
    reference: str
    label: str | None
    created_at: datetime
    updated_at: datetime
    fingers: tuple[FingerRecord, ...]


@dataclass(frozen=True)
class PersonSummary:
    reference: str
    label: str | None
    fingers: int
    created_at: datetime
    updated_at: datetime


class GalleryTemplate(NamedTuple):
    """One enrolled impression, ready for a 1:N index: its prepared views (the grid
    phases, or one view), or, from `iter_templates`, view 0 alone."""

    finger_id: int
    reference: str
    position: int
    template: Template


@dataclass(frozen=True)
class FingerScore:
    finger_id: int
    impression: int
    comparison: Comparison  # raw score, FMR and the paired minutiae, for the reviewer

    @property
    def score(self) -> float:
        return self.comparison.score

    @property
    def fmr(self) -> float:
        return self.comparison.fmr


@dataclass(frozen=True)
class Candidate:
    """A person whose fingers resemble the probe's.

    `fmr` is the false match rate of the fused comparison (see
    `lintas.biometrics.matching.compare_fingers`) against the person's best-matching
    impression, multiplied by the number of impressions compared (at most 1): taking the
    best of k tries gives an impostor up to k chances. It is a per-person rate.

    `fpir` is the search's rate: searching N persons, about N x fmr impostors are
    expected to score as well, so fpir = min(1, N x fmr) bounds the chance that a search
    for someone not enrolled turns up a candidate this strong (the false positive
    identification rate of a threshold here). N is every enrolled person (as far as the
    1:N index has followed the gallery, when there is one), or the persons named in a
    verification. A hit is decided on `fpir`: the same per-person rate that is a clear
    match in a gallery of a hundred is an expected coincidence in one of a million.
    """

    reference: str
    fmr: float
    fingers: Mapping[int, FingerScore]  # finger position -> its comparison
    fpir: float

    @property
    def evidence(self) -> float:
        """-log10(fmr): 2 at FMR 1 %, 3 at 0.1 %, and so on."""
        return -math.log10(self.fmr)


@dataclass(frozen=True)
class _Checked:
    position: int
    record: bytes
    nfiq2: int | None
    minutiae_count: int
    phases: Phases  # every view stored, prepared; view 0 first


EnrolListener = Callable[[list[GalleryTemplate]], None]
DeleteListener = Callable[[list[int]], None]


class Gallery:
    def __init__(self, db: Database, policy: QualityPolicy | None = None,
                 min_minutiae: int = MIN_MINUTIAE) -> None:
        self.db = db
        self.policy = policy or QualityPolicy()
        self.min_minutiae = min_minutiae
        self._on_enrol: list[EnrolListener] = []
        self._on_delete: list[DeleteListener] = []
        self._index: dict[int, IndexShard] | None = None  # finger position -> shard
        self._owners: dict[int, tuple[int, str]] = {}  # finger id -> (position, reference)
        self._persons: Counter[str] = Counter()  # reference -> its fingers in the index
        # The API enrols and searches from several threads at once; the shards are not
        # safe to change while another thread reads them.
        self._index_lock = threading.RLock()
        # The journal of changes (GalleryChange) as this index has followed it: every
        # change up to `_cursor` is applied, and of those after it, `_applied`.
        self._cursor = 0
        self._applied: set[int] = set()
        self._calibration: tuple[str, Calibrations] | None = None  # (stored text, parsed)

    # --- calibration ------------------------------------------------------------------

    def calibrations(self) -> Calibrations:
        """The tables that turn this node's scores into false match rates: the node's
        own (`set_calibrations`), else the shipped ones (FVC2004's four sensors).

        Read from the database at every search (one row): a table set by another
        process, such as `lintas gallery calibration set` beside a serving node, applies
        from the next search on."""
        with self.db.session() as s:
            text = s.scalar(select(Setting.value).where(Setting.key == CALIBRATION_SETTING))
        if text is None:
            return shipped()
        cached = self._calibration
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            tables = Calibrations.from_json(json.loads(text))
        except (ValueError, MatchError) as exc:  # validated when stored: a damaged row
            raise GalleryError(f"calibration: the node's stored calibration is unreadable "
                               f"({exc}); set it again or reset it") from None
        self._calibration = (text, tables)
        return tables

    def own_calibrations(self) -> bool:
        """Whether the node has set its own calibration tables."""
        with self.db.session() as s:
            return s.get(Setting, CALIBRATION_SETTING) is not None

    def set_calibrations(self, tables: Calibrations | None, actor: Principal) -> None:
        """Make `tables` the node's calibration (None: back to the shipped tables), for
        every search from now on. Admins only; audited in the same transaction."""
        require_role(actor, "admin", to="change the gallery's calibration")
        for name, table in ([] if tables is None else [("single", tables.single),
                                                       ("phased", tables.phased)]):
            if table.tail is None:
                raise GalleryError(
                    f"{name}: no fitted tail. Counted on {table.impostors:,} impostor "
                    f"comparisons, it claims no rate below 1/{table.impostors:,}, while a "
                    "search needs rates as rare as 0.1 % divided by the persons searched; "
                    "measure on at least 2,000 impostor comparisons")
        with self.db.session() as s:
            row = s.get(Setting, CALIBRATION_SETTING)
            if tables is None:
                if row is not None:
                    s.delete(row)
                details = {"tables": "shipped"}
            else:
                text = json.dumps(tables.as_json(), separators=(",", ":"))
                if row is None:
                    s.add(Setting(key=CALIBRATION_SETTING, value=text))
                else:
                    row.value = text
                details = {"tables": "own", "single": tables.single.source[:200],
                           "phased": tables.phased.source[:200],
                           "sha256": hashlib.sha256(text.encode()).hexdigest()}
            AuditLog(self.db).record(s, actor.username, actor.role, "gallery.calibration",
                                     "reset" if tables is None else "set", details=details)

    # --- the 1:N index ----------------------------------------------------------------

    def use_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build the in-memory 1:N index (one shard per finger position) from the
        persisted templates, keep it up to date on this object's enrolments and
        deletions, and let `search` prune with it. Returns the fingers indexed.
        `progress(done, total)` is called after each batch of fingers.

        Changes made by another process (a CLI run beside a serving node, another node
        process on the same database) reach the index through `sync_index`."""
        with self._index_lock:
            self._index, self._owners, self._persons = {}, {}, Counter()
            with self.db.session() as s:  # before the fingers: a change made while they
                # are read is replayed by the next sync_index, not lost
                self._cursor = int(s.scalar(select(func.max(GalleryChange.id))) or 0)
                self._applied = set(s.scalars(select(GalleryChange.id).where(
                    GalleryChange.id > self._cursor - JOURNAL_LOOKBACK)))
            total = self.finger_count()
            for rows in self._batches(INDEX_BATCH):
                self._index_records([(f, ref, pos, rec) for f, ref, pos, _, rec in rows])
                if progress is not None:
                    progress(len(self._owners), max(total, len(self._owners)))
            if self._index_add not in self._on_enrol:
                self.on_enrol(self._index_add)
                self.on_delete(self._index_remove)
            return len(self._owners)

    def _index_records(self, rows: list[tuple[int, str, int, bytes]]) -> None:
        """Index stored fingers (id, reference, position, ISO record) not yet indexed.
        Only the minutiae are decoded (the index builds its own key cylinders), and the
        fingers are built at once on all cores: at 100,000 fingers, one by one through
        `prepare` took 160 s of a node's start-up."""
        assert self._index is not None
        by_position: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)
        for finger_id, reference, position, record in rows:
            (_, minutiae), *others = read_minutiae(record)[:PHASES]
            # which of view 0's minutiae recur in the other grid phases (for the keys)
            recur = recurring(minutiae[:, 0], minutiae[:, 1], np.radians(minutiae[:, 2]),
                              [(m[:, 0], m[:, 1], np.radians(m[:, 2])) for _, m in others])
            by_position[position].append((finger_id, minutiae, recur))
            self._own(finger_id, position, reference)
        for position, fingers in by_position.items():
            stacked = np.concatenate([m for _, m, _ in fingers])
            self._index.setdefault(position, IndexShard()).add_many(
                np.array([finger_id for finger_id, _, _ in fingers], dtype=np.int64),
                # as `matching.prepare` takes them: y up, radians
                stacked[:, 0], -stacked[:, 1], np.radians(stacked[:, 2]),
                np.cumsum([0] + [len(m) for _, m, _ in fingers]),
                np.concatenate([r for _, _, r in fingers]))

    def _index_add(self, templates: list[GalleryTemplate]) -> None:
        with self._index_lock:
            if self._index is None:
                return
            for t in templates:
                self._index.setdefault(t.position, IndexShard()).add(t.finger_id, t.template)
                self._own(t.finger_id, t.position, t.reference)

    def _index_remove(self, finger_ids: list[int]) -> None:
        with self._index_lock:
            if self._index is None:
                return
            for finger_id in finger_ids:
                owner = self._owners.pop(finger_id, None)
                if owner is not None:
                    self._index[owner[0]].remove(finger_id)
                    self._disown(owner[1])

    def _own(self, finger_id: int, position: int, reference: str) -> None:
        old = self._owners.get(finger_id)
        if old is not None:
            self._disown(old[1])
        self._owners[finger_id] = (position, reference)
        self._persons[reference] += 1

    def _disown(self, reference: str) -> None:
        self._persons[reference] -= 1
        if self._persons[reference] <= 0:
            del self._persons[reference]

    def _persons_searched(self) -> int:
        """The persons a 1:N search runs over, for its search rate: those the index holds
        when there is one (kept by the same journal as the index, so no count query on
        every search: about 50 ms on PostgreSQL at a million persons), else every
        enrolled person."""
        with self._index_lock:
            if self._index is not None:
                return len(self._persons)
        return self.count()

    def sync_index(self) -> int:
        """Apply to the index the gallery changes that other processes committed since the
        last call (this object's own reach it at once); returns the fingers re-read.
        Cheap when nothing changed: one indexed query. The changes a little before the
        last one seen are read again, because on PostgreSQL a change can commit after
        one with a higher id; those already applied are skipped."""
        if self._index is None:
            return 0
        with self.db.session() as s:
            changes = s.execute(select(GalleryChange.id, GalleryChange.finger_id)
                                .where(GalleryChange.id > self._cursor - JOURNAL_LOOKBACK)
                                .order_by(GalleryChange.id).limit(JOURNAL_BATCH)).all()
        fresh = [(int(i), int(f)) for i, f in changes if i not in self._applied]
        if not fresh:
            return 0
        changed = sorted({f for _, f in fresh})
        current: list[tuple[int, str, int, bytes]] = []  # the changed fingers still stored
        for first in range(0, len(changed), 500):
            with self.db.session() as s:
                for finger_id, reference, position, record in s.execute(
                        select(GalleryFinger.id, GalleryPerson.reference,
                               GalleryFinger.position, GalleryFinger.template)
                        .join(GalleryPerson, GalleryPerson.id == GalleryFinger.person_id)
                        .where(GalleryFinger.id.in_(changed[first:first + 500]))):
                    current.append((int(finger_id), str(reference), int(position),
                                    bytes(record)))
        with self._index_lock:
            if self._index is None:
                return 0
            # What the database holds now decides: a finger still there is (re-)indexed
            # as stored, one gone is removed, whatever order the changes came in.
            self._index_remove(changed)
            self._index_records(current)
            self._applied.update(i for i, _ in fresh)
            # Only here does the cursor move: past every entry read, so the next call
            # starts from there (less the look-back) however many changes came at once.
            self._cursor = max(self._cursor, int(changes[-1][0]))
            floor = self._cursor - JOURNAL_LOOKBACK
            self._applied = {i for i in self._applied if i > floor}
        return len(changed)

    def _mark_applied(self, change_ids: list[int]) -> None:
        """This object's own committed changes, already in its index through the
        listeners: sync_index skips them."""
        with self._index_lock:
            if self._index is not None:
                self._applied.update(change_ids)

    def _shortlisted(self, probe: Mapping[int, Template], limit: int,
                     tables: Calibrations) -> dict[str, float] | None:
        """The persons the index proposes for a probe, each with the best evidence
        (-log10 FMR) the index's matcher gave one of their fingers (None: no index,
        compare all)."""
        with self._index_lock:
            if self._index is None:
                return None
            evidence: dict[str, float] = {}
            for position, template in probe.items():
                shard = self._index.get(position)
                if shard is not None:
                    for candidate in search_shards([shard], template,
                                                   limit=max(4 * limit, 50),
                                                   calibration=tables.single):
                        reference = self._owners[candidate.key][1]
                        evidence[reference] = max(evidence.get(reference, 0.0),
                                                  -math.log10(candidate.fmr))
            return evidence

    # --- listeners --------------------------------------------------------------------

    def on_enrol(self, listener: EnrolListener) -> None:
        """Call `listener(templates)` after each commit that adds fingers."""
        self._on_enrol.append(listener)

    def on_delete(self, listener: DeleteListener) -> None:
        """Call `listener(finger_ids)` after each commit that removes fingers."""
        self._on_delete.append(listener)

    def _notify(self, removed: list[int], added: list[GalleryTemplate]) -> None:
        if removed:
            for on_delete in self._on_delete:
                on_delete(list(removed))
        if added:
            for on_enrol in self._on_enrol:
                on_enrol(list(added))

    # --- writing ----------------------------------------------------------------------

    def enrol(self, reference: str, fingers: Sequence[tuple[int, Sample]],
              label: str | None = None, replace: bool = False,
              partial: bool = False) -> EnrolResult:
        """Enrol a new person (or, with `replace`, replace a known person's fingers and
        label). DuplicateReference if the reference is known and `replace` is False."""
        _check_reference(reference)
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
            raise GalleryError(f"label: text of at most {MAX_LABEL} characters")
        if not replace:
            self._refuse_known(reference)
        checked, rejected = self._check_all(fingers, "enrolment")
        if not checked or (rejected and not partial):
            return EnrolResult(reference, False, (), tuple(rejected))
        now = utcnow()
        try:
            with self.db.session() as s:
                person = s.scalar(select(GalleryPerson)
                                  .where(GalleryPerson.reference == reference))
                removed: list[int] = []
                if person is None:
                    person = GalleryPerson(reference=reference, label=label, created_at=now,
                                           updated_at=now)
                    s.add(person)
                    s.flush()
                elif not replace:
                    raise DuplicateReference(_known(reference))
                else:
                    removed = list(s.scalars(select(GalleryFinger.id)
                                             .where(GalleryFinger.person_id == person.id)))
                    s.execute(delete(GalleryFinger).where(GalleryFinger.person_id == person.id))
                    person.label, person.updated_at = label, now
                rows = self._insert(s, person.id, checked, now)
                journal = self._journal(s, removed + [r.id for r in rows], now)
        except IntegrityError:  # another process enrolled the same reference meanwhile
            raise DuplicateReference(_known(reference)) from None
        return self._done(reference, rows, checked, rejected, removed, journal)

    def update(self, reference: str, fingers: Sequence[tuple[int, Sample]],
               partial: bool = False) -> EnrolResult:
        """Replace the impressions of the finger positions given (all of a position's
        impressions: those positions' fingers are recaptured); others stay as they are."""
        if self.get(reference) is None:
            raise UnknownReference(_unknown(reference))
        checked, rejected = self._check_all(fingers, "enrolment")
        if not checked or (rejected and not partial):
            return EnrolResult(reference, False, (), tuple(rejected))
        now = utcnow()
        with self.db.session() as s:
            person = s.scalar(select(GalleryPerson).where(GalleryPerson.reference == reference))
            if person is None:
                raise UnknownReference(_unknown(reference))
            positions = sorted({c.position for c in checked})
            which = (GalleryFinger.person_id == person.id) & \
                GalleryFinger.position.in_(positions)
            removed = list(s.scalars(select(GalleryFinger.id).where(which)))
            s.execute(delete(GalleryFinger).where(which))
            person.updated_at = now
            rows = self._insert(s, person.id, checked, now)
            journal = self._journal(s, removed + [r.id for r in rows], now)
        return self._done(reference, rows, checked, rejected, removed, journal)

    def delete(self, reference: str) -> int:
        """Remove a person and (by the foreign key's ON DELETE CASCADE) all their fingers;
        returns how many fingers went. UnknownReference if there is no such person."""
        _check_reference(reference)
        with self.db.session() as s:
            person_id = s.scalar(select(GalleryPerson.id)
                                 .where(GalleryPerson.reference == reference))
            if person_id is None:
                raise UnknownReference(_unknown(reference))
            removed = list(s.scalars(select(GalleryFinger.id)
                                     .where(GalleryFinger.person_id == person_id)))
            s.execute(delete(GalleryPerson).where(GalleryPerson.id == person_id))
            journal = self._journal(s, removed, utcnow())
        self._notify(removed, [])
        self._mark_applied(journal)
        return len(removed)

    def _refuse_known(self, reference: str) -> None:
        with self.db.session() as s:
            if s.scalar(select(GalleryPerson.id)
                        .where(GalleryPerson.reference == reference)) is not None:
                raise DuplicateReference(_known(reference))

    @staticmethod
    def _insert(s: Session, person_id: int, checked: list[_Checked],
                now: datetime) -> list[GalleryFinger]:
        numbers: dict[int, int] = defaultdict(int)
        rows = []
        for c in checked:
            numbers[c.position] += 1
            rows.append(GalleryFinger(person_id=person_id, position=c.position,
                                      impression=numbers[c.position], template=c.record,
                                      nfiq2=c.nfiq2, minutiae_count=c.minutiae_count,
                                      created_at=now))
        s.add_all(rows)
        s.flush()  # assigns the ids
        return rows

    @staticmethod
    def _journal(s: Session, finger_ids: list[int], now: datetime) -> list[int]:
        """Record in the journal, in the transaction that makes them, the fingers added
        and removed; returns the journal ids (marked applied only after the commit)."""
        changes = [GalleryChange(finger_id=f, at=now) for f in finger_ids]
        s.add_all(changes)
        s.flush()
        return [c.id for c in changes]

    def prune_journal(self, keep: timedelta = JOURNAL_KEEP) -> int:
        """Delete journal entries older than `keep` (a serving process follows the
        journal every second; a process that starts later reads the whole gallery)."""
        with self.db.session() as s:
            result = s.execute(delete(GalleryChange).where(GalleryChange.at < utcnow() - keep))
            return int(getattr(result, "rowcount", 0) or 0)

    def _done(self, reference: str, rows: list[GalleryFinger], checked: list[_Checked],
              rejected: list[Rejection], removed: list[int], journal: list[int]
              ) -> EnrolResult:
        added = [GalleryTemplate(r.id, reference, r.position, c.phases)
                 for r, c in zip(rows, checked, strict=True)]
        self._notify(removed, added)
        self._mark_applied(journal)
        return EnrolResult(
            reference, True,
            tuple(EnrolledFinger(r.id, r.position, r.impression, r.nfiq2, r.minutiae_count)
                  for r in rows),
            tuple(rejected), len(removed))

    # --- checking samples -------------------------------------------------------------

    def _check_all(self, fingers: Sequence[tuple[int, Sample]],
                   purpose: Purpose) -> tuple[list[_Checked], list[Rejection]]:
        if isinstance(fingers, str | bytes) or not isinstance(fingers, Sequence):
            raise GalleryError("fingers: a list of (finger position, sample) pairs")
        if not fingers:
            raise GalleryError("fingers: at least one finger is required")
        if len(fingers) > MAX_FINGERS_PER_PERSON:
            raise GalleryError(f"fingers: at most {MAX_FINGERS_PER_PERSON} impressions")
        for i, item in enumerate(fingers):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise GalleryError(f"fingers[{i}]: a (finger position, sample) pair")
            position, sample = item
            if isinstance(position, bool) or not isinstance(position, int) \
                    or not 1 <= position <= 10:
                raise GalleryError(f"fingers[{i}]: finger position {position!r} is not 1..10")
            if not isinstance(sample, FingerImage | FingerView | MinutiaeTemplate):
                raise GalleryError(f"fingers[{i}]: a FingerImage, FingerView or "
                                   f"MinutiaeTemplate, not {type(sample).__name__}")
        checked, rejected = [], []
        for i, (position, sample) in enumerate(fingers):
            result = self._check(position, sample, purpose)
            if isinstance(result, str):
                rejected.append(Rejection(i, position, result))
            else:
                checked.append(result)
        return checked, rejected

    def _check(self, position: int, sample: Sample, purpose: Purpose) -> _Checked | str:
        """The finger ready to store and compare, or why it is refused."""
        quality: int | None = None
        if isinstance(sample, FingerImage):
            report = nfiq2(sample)
            verdict = self.policy.verdict(report, purpose)
            if verdict is not None:
                return verdict
            quality = report.score
            try:
                views = extract_phases(sample, position)
            except ImageError as exc:
                return f"{exc}: {DEFAULT_ADVICE}"
            template = MinutiaeTemplate(sample.width, sample.height, views)
            advice = f": {DEFAULT_ADVICE}"
        else:
            template_or_reason = _as_500_ppi(sample, position)
            if isinstance(template_or_reason, str):
                return template_or_reason
            template, advice = template_or_reason, ""
        count = len(template.views[0].minutiae)
        if count < self.min_minutiae:
            return f"only {count} minutiae (at least {self.min_minutiae} are needed){advice}"
        try:
            record = formats.write(template, TEMPLATE_FORMAT)
            stored = formats.read(record, TEMPLATE_FORMAT).views
        except ValueError as exc:
            return f"the template cannot be stored as {TEMPLATE_FORMAT}: {exc}"
        # What is compared now is exactly what a restart will read back from the database.
        return _Checked(position, record, quality, count, prepare_phases(stored))

    # --- reading ----------------------------------------------------------------------

    def stored_template(self, finger_id: int) -> MinutiaeTemplate:
        """An enrolled impression's template as stored (its views at 500 ppi, view 0
        first: the minutiae a comparison's explanation indexes into)."""
        with self.db.session() as s:
            record = s.scalar(select(GalleryFinger.template)
                              .where(GalleryFinger.id == finger_id))
        if record is None:
            raise GalleryError(f"finger: no enrolled impression {finger_id}")
        return formats.read(record, TEMPLATE_FORMAT)

    def get(self, reference: str) -> PersonRecord | None:
        _check_reference(reference)
        with self.db.session() as s:
            person = s.scalar(select(GalleryPerson).where(GalleryPerson.reference == reference))
            if person is None:
                return None
            fingers = s.execute(
                select(GalleryFinger.id, GalleryFinger.position, GalleryFinger.impression,
                       GalleryFinger.nfiq2, GalleryFinger.minutiae_count,
                       GalleryFinger.created_at)
                .where(GalleryFinger.person_id == person.id)
                .order_by(GalleryFinger.position, GalleryFinger.impression)).all()
        return PersonRecord(person.reference, person.label, person.created_at,
                            person.updated_at, tuple(FingerRecord(*row) for row in fingers))

    def persons(self, limit: int = 50, offset: int = 0) -> list[PersonSummary]:
        """Persons by reference, with how many impressions each has."""
        if limit < 1 or offset < 0:
            raise GalleryError("limit: at least 1; offset: at least 0")
        fingers = (select(GalleryFinger.person_id, func.count().label("n"))
                   .group_by(GalleryFinger.person_id).subquery())
        with self.db.session() as s:
            rows = s.execute(
                select(GalleryPerson.reference, GalleryPerson.label,
                       func.coalesce(fingers.c.n, 0), GalleryPerson.created_at,
                       GalleryPerson.updated_at)
                .outerjoin(fingers, fingers.c.person_id == GalleryPerson.id)
                .order_by(GalleryPerson.reference).limit(limit).offset(offset)).all()
        return [PersonSummary(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]

    def count(self) -> int:
        """How many persons are enrolled."""
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(GalleryPerson)) or 0)

    def finger_count(self) -> int:
        """How many impressions are enrolled, all persons together."""
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(GalleryFinger)) or 0)

    def iter_templates(self, batch: int = 500) -> Iterator[GalleryTemplate]:
        """Every enrolled impression, by finger id, read in batches (no transaction is
        held while the caller works)."""
        for rows in self._batches(batch):
            for finger_id, reference, position, _, record in rows:
                yield GalleryTemplate(finger_id, reference, position, _decode_view0(record))

    def _batches(self, batch: int,
                 positions: Sequence[int] | None = None,
                 references: Sequence[str] | None = None,
                 ) -> Iterator[list[tuple[int, str, int, int, bytes]]]:
        last = 0
        while True:
            query = (select(GalleryFinger.id, GalleryPerson.reference, GalleryFinger.position,
                            GalleryFinger.impression, GalleryFinger.template)
                     .join(GalleryPerson, GalleryPerson.id == GalleryFinger.person_id)
                     .where(GalleryFinger.id > last).order_by(GalleryFinger.id).limit(batch))
            if positions is not None:
                query = query.where(GalleryFinger.position.in_(list(positions)))
            if references is not None:
                query = query.where(GalleryPerson.reference.in_(list(references)))
            with self.db.session() as s:
                rows = [(int(r[0]), str(r[1]), int(r[2]), int(r[3]), bytes(r[4]))
                        for r in s.execute(query).all()]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    # --- searching --------------------------------------------------------------------

    def prepare_probe(self, fingers: Sequence[tuple[int, Sample]]
                      ) -> tuple[dict[int, Phases], list[Rejection]]:
        """Check and extract probe fingers (with the probe quality minimum); one
        impression per position, each as its prepared views (the grid phases of an
        image; one view for minutiae)."""
        checked, rejected = self._check_probe(fingers)
        return {c.position: c.phases for c in checked}, rejected

    def _check_probe(self, fingers: Sequence[tuple[int, Sample]]
                     ) -> tuple[list[_Checked], list[Rejection]]:
        positions = [item[0] for item in fingers if isinstance(item, tuple) and item]
        for position in set(positions):
            if positions.count(position) > 1:
                raise GalleryError(f"fingers: position {position} is given more than once "
                                   "(a probe holds one impression per finger)")
        return self._check_all(fingers, "probe")

    def probe_records(self, fingers: Sequence[tuple[int, Sample]]
                      ) -> tuple[dict[int, bytes], list[Rejection]]:
        """Like `prepare_probe`, but the ISO/IEC 19794-2:2011 records to send to a
        partner's node (docs/checks.md)."""
        checked, rejected = self._check_probe(fingers)
        return {c.position: c.record for c in checked}, rejected

    def probe_from_records(self, records: Mapping[int, bytes]
                           ) -> dict[int, Phases]:
        """Probe templates from received records (every view up to the grid phases);
        GalleryError naming the finger when one is malformed or its view 0 holds too
        few minutiae."""
        probe = {}
        for position, record in records.items():
            try:
                views = formats.read(record, TEMPLATE_FORMAT).views
                view = views[0]
            except (ValueError, IndexError) as exc:
                raise GalleryError(f"{finger_name(position)}: not an {TEMPLATE_FORMAT} record "
                                   f"({exc})") from None
            if len(view.minutiae) < self.min_minutiae:
                raise GalleryError(f"{finger_name(position)}: only {len(view.minutiae)} "
                                   f"minutiae (at least {self.min_minutiae} are needed)")
            probe[position] = prepare_phases(views[:PHASES])
        return probe

    def search(self, probe: Mapping[int, Template], limit: int = 10,
               max_fmr: float | None = None, within: Sequence[str] | None = None,
               max_fpir: float | None = None) -> list[Candidate]:
        """Compare the probe with the enrolled persons sharing a finger position with it
        and return the best `limit` candidates, lowest FMR first; with `max_fmr`, only
        candidates at or below that per-person rate, with `max_fpir` only those at or
        below that search rate (`Candidate.fpir`). With `use_index()`, only the persons
        the 1:N index proposes are compared; without it, every person is. `within` names
        the only persons to compare (a 1:1 verification against a record)."""
        if not isinstance(probe, Mapping) or not probe:
            raise GalleryError("probe: at least one finger (position -> MatchTemplate)")
        for position, template in probe.items():
            if isinstance(position, bool) or not isinstance(position, int) \
                    or not 1 <= position <= 10:
                raise GalleryError(f"probe: finger position {position!r} is not 1..10")
            if not (isinstance(template, MatchTemplate) or (
                    isinstance(template, tuple) and template
                    and all(isinstance(t, MatchTemplate) for t in template))):
                raise GalleryError(f"probe: finger {position} is not a MatchTemplate or "
                                   "a tuple of them (its views)")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise GalleryError(f"limit: {limit!r} is not a positive number")
        for name, rate in (("max_fmr", max_fmr), ("max_fpir", max_fpir)):
            if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                                     or not 0 < rate <= 1):
                raise GalleryError(f"{name}: {rate!r} is not in (0, 1]")
        tables = self.calibrations()
        searched = len(set(within)) if within is not None else self._persons_searched()
        # The per-person rate a candidate must reach, for the index's shortlist.
        bound = max_fmr if max_fpir is None else min(max_fmr or 1.0, max_fpir / max(1, searched))
        # reference -> impression -> position -> (finger id, template)
        gallery: dict[str, dict[int, dict[int, tuple[int, Template]]]] = \
            defaultdict(lambda: defaultdict(dict))
        if within is not None:  # a 1:1 verification against the given records
            chosen: list[str] | None = sorted(set(within))
        else:
            shortlisted = self._shortlisted(probe, limit, tables)
            if shortlisted is not None and not shortlisted:
                return []
            chosen = None if shortlisted is None else _to_compare(shortlisted, len(probe),
                                                                  limit, bound)
        for rows in self._batches(500, sorted(probe), chosen):
            for finger_id, reference, position, impression, record in rows:
                gallery[reference][impression][position] = (finger_id, _decode(record))
        candidates = []
        for reference, impressions in gallery.items():
            best = None
            for impression, fingers in impressions.items():
                fused = compare_fingers(probe, {p: t for p, (_, t) in fingers.items()},
                                        tables)
                if best is None or fused.evidence > best[1].evidence:
                    best = (impression, fused, fingers)
            assert best is not None
            impression, fused, fingers = best
            fmr = min(1.0, fused.fmr * len(impressions))
            fpir = min(1.0, fmr * searched)
            if (max_fmr is not None and fmr > max_fmr) or (max_fpir is not None
                                                          and fpir > max_fpir):
                continue
            scores = {p: FingerScore(fingers[p][0], impression, c)
                      for p, c in fused.fingers.items()}
            candidates.append(Candidate(reference, fmr, scores, fpir))
        candidates.sort(key=lambda c: (c.fmr, c.reference))
        return candidates[:limit]


def _to_compare(shortlisted: Mapping[str, float], fingers: int, limit: int,
                max_fmr: float | None) -> list[str]:
    """The shortlisted persons to compare in full (reading and decoding their stored
    templates, a few milliseconds each): all of them without `max_fmr`; with it, the
    `limit` best by the index's evidence and every other person who could still reach
    `max_fmr`. A person's fused evidence is the sum over the probe's fingers, so one of
    their fingers needs at least 1/`fingers` of the evidence `max_fmr` asks for; the
    index's matcher gives the full matcher's score from the same minutiae (measured:
    equal for 589 of 600 pairs, the rest within 0.03 in FMR), and PLAUSIBLE_MARGIN
    decades of slack keep it from ever deciding a candidate (the index compares view 0;
    a finger stored with its grid phases is then compared phase by phase, against the
    phased calibration, whose rates near FMR 0.1 % lie within a factor of 1.3 of the
    single view's). Comparing the `limit` best
    even when none is plausible makes a search cost the same whether it ends in a hit
    or not, so that the time of a no-hit answer never tells a protected record apart."""
    if max_fmr is None:
        return sorted(shortlisted)
    floor = -math.log10(max_fmr) / fingers - PLAUSIBLE_MARGIN
    ranked = sorted(shortlisted, key=lambda r: (-shortlisted[r], r))
    return sorted(set(ranked[:limit]) | {r for r in ranked if shortlisted[r] >= floor})


def _check_reference(reference: object) -> None:
    if not isinstance(reference, str) or not 1 <= len(reference) <= MAX_REFERENCE:
        raise GalleryError(f"reference: 1..{MAX_REFERENCE} characters are required")
    if reference != reference.strip() or not reference.isprintable():
        raise GalleryError(f"reference: {reference!r} has leading or trailing spaces or "
                           "control characters")


def _known(reference: str) -> str:
    return (f"reference: {reference!r} is already enrolled; use replace (or `update` for "
            "some fingers) to change it")


def _unknown(reference: str) -> str:
    return f"reference: no person {reference!r} in the gallery"


def _decode(record: bytes) -> Phases:
    """A stored finger's views (up to the grid phases), prepared for comparison."""
    return prepare_phases(formats.read(record, TEMPLATE_FORMAT).views[:PHASES])


def _decode_view0(record: bytes) -> MatchTemplate:
    return prepare(formats.read(record, TEMPLATE_FORMAT).views[0])




def _as_500_ppi(sample: FingerView | MinutiaeTemplate, position: int) -> MinutiaeTemplate | str:
    """A template at 500 ppi of the finger at `position` (its views: one, or the grid
    phases of one impression, as `extract_phases` makes them), or why not."""
    if isinstance(sample, MinutiaeTemplate):
        if not 1 <= len(sample.views) <= PHASES:
            return (f"the minutiae template holds {len(sample.views)} finger views, not one "
                    f"impression (one view, or up to {PHASES} grid phases of it)")
        template = sample
    else:
        if not sample.minutiae:
            return "the template holds no minutiae"
        width = max(m.x for m in sample.minutiae) + 1
        height = max(m.y for m in sample.minutiae) + 1
        template = MinutiaeTemplate(width, height, (sample,))
    for view in template.views:
        if view.position not in (0, position):
            return (f"the minutiae are of {finger_name(view.position)}, not of finger "
                    f"{position}")
    views = tuple(dataclasses.replace(view, position=position) for view in template.views)
    if abs(template.resolution_x - PPCM_500_PPI) <= 1 and \
            abs(template.resolution_y - PPCM_500_PPI) <= 1:
        return dataclasses.replace(template, views=views)
    # The matcher is calibrated at 500 ppi: scale the positions to it.
    sx, sy = PPCM_500_PPI / template.resolution_x, PPCM_500_PPI / template.resolution_y
    width, height = max(1, round(template.width * sx)), max(1, round(template.height * sy))
    return MinutiaeTemplate(width, height, tuple(
        dataclasses.replace(view, minutiae=tuple(
            dataclasses.replace(m, x=min(width - 1, round(m.x * sx)),
                                y=min(height - 1, round(m.y * sy))) for m in view.minutiae))
        for view in views))


__all__ = ["FINGER_NAMES", "MIN_MINUTIAE", "Candidate", "DuplicateReference", "EnrolResult",
           "EnrolledFinger", "FingerRecord", "FingerScore", "Gallery", "GalleryError",
           "GalleryTemplate", "PersonRecord", "PersonSummary", "Rejection",
           "UnknownReference", "finger_name"]
