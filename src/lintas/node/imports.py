"""Bulk gallery enrolment in the background, with its progress kept in the database.

An administrator hands in a batch of persons (each: a reference, and fingers as images
or templates, or one ANSI/NIST-ITL transaction). The batch is checked for shape at once
(refused whole, naming the item and field, before anything is written); the prints are
then quality-checked, extracted and enrolled one person at a time by a worker thread,
each person in its own transaction. Progress (done / total, persons and fingers
enrolled) and every rejected item with its reason are written after each person, so a
client can follow the job and nothing done is lost if the node stops: at the next start
a job left running is marked `interrupted`, and its record says how far it got.
"""

from __future__ import annotations

import builtins
import json
import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from lintas.node.gallery import DuplicateReference, Gallery, GalleryError
from lintas.node.models import GalleryImport
from lintas.node.runtime import Node
from lintas.node.samples import FingerInput, SampleError, samples, transaction_samples
from lintas.node.users import Principal, require_role
from lintas.storage import utcnow

log = logging.getLogger("lintas.node.imports")

MAX_ITEMS = 1000


@dataclass(frozen=True)
class ImportItem:
    reference: str | None  # None: the transaction control number (1.009) of `ansi_nist`
    fingers: Sequence[FingerInput] = ()
    ansi_nist: bytes | None = None
    label: str | None = None


@dataclass(frozen=True)
class ImportStatus:
    id: str
    state: str  # running | done | interrupted
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    total: int
    done: int
    persons: int
    fingers: int
    rejected: list[dict[str, object]]  # {"item": index, "reference": ..., "reason": ...}


def _status(row: GalleryImport) -> ImportStatus:
    return ImportStatus(row.id, row.state, row.created_by, row.created_at, row.finished_at,
                        row.total, row.done, row.persons, row.fingers, json.loads(row.rejected))


class GalleryImports:
    def __init__(self, node: Node, gallery: Gallery) -> None:
        self.node = node
        self.gallery = gallery
        self._queue: queue.Queue[tuple[str, list[ImportItem], bool]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        with node.db.session() as s:  # a job left running by an earlier process
            s.execute(update(GalleryImport).where(GalleryImport.state == "running")
                      .values(state="interrupted", finished_at=utcnow()))

    def start(self, actor: Principal, items: Sequence[ImportItem],
              replace: bool = False) -> ImportStatus:
        """Queue a batch; its progress is `get(id)`."""
        require_role(actor, "admin", to="import into the gallery")
        if not 1 <= len(items) <= MAX_ITEMS:
            raise GalleryError(f"persons: 1 to {MAX_ITEMS} per import")
        for i, item in enumerate(items):
            if item.reference is None and item.ansi_nist is None:
                raise GalleryError(f"persons[{i}].reference: required unless an ANSI/NIST-ITL "
                                   "transaction gives it (its TCN, 1.009)")
            if not item.fingers and item.ansi_nist is None:
                raise GalleryError(f"persons[{i}].fingers: at least one finger, or ansi_nist")
        job_id = str(uuid.uuid4())
        with self.node.db.session() as s:
            s.add(GalleryImport(id=job_id, state="running", created_by=actor.username,
                                created_at=utcnow(), total=len(items), done=0, persons=0,
                                fingers=0, rejected="[]"))
            self.node.audit.record(s, actor.username, actor.role, "gallery.import", "started",
                                   details={"import": job_id, "persons": len(items),
                                            "replace": replace})
        with self._lock:
            self._queue.put((job_id, list(items), replace))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="gallery-import",
                                                daemon=True)
                self._worker.start()
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: str) -> ImportStatus | None:
        with self.node.db.session() as s:
            row = s.get(GalleryImport, job_id)
            return _status(row) if row is not None else None

    def list(self, limit: int = 20) -> list[ImportStatus]:
        with self.node.db.session() as s:
            return [_status(r) for r in s.scalars(select(GalleryImport).order_by(
                GalleryImport.created_at.desc()).limit(limit))]

    # --- the worker -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                job_id, items, replace = self._queue.get(timeout=5)
            except queue.Empty:
                with self._lock:  # exit only when no job came in meanwhile
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            try:
                self._import(job_id, items, replace)
            except Exception as exc:  # the job record says so; the worker goes on
                log.error("gallery import %s stopped: %s: %s", job_id, type(exc).__name__, exc)
                with self.node.db.session() as s:
                    row = s.get(GalleryImport, job_id)
                    if row is not None and row.state == "running":
                        row.state, row.finished_at = "interrupted", utcnow()

    def _import(self, job_id: str, items: builtins.list[ImportItem], replace: bool) -> None:
        persons = fingers = 0
        rejected: builtins.list[dict[str, object]] = []
        for i, item in enumerate(items):
            reference = item.reference
            try:
                given = samples(item.fingers) if item.fingers else []
                if item.ansi_nist is not None:
                    tcn, from_transaction = transaction_samples(item.ansi_nist)
                    given += from_transaction
                    if reference is None:
                        if not tcn:
                            raise SampleError("ansi_nist",
                                              "no transaction control number (1.009)")
                        reference = tcn
                result = self.gallery.enrol(reference or "", given, label=item.label,
                                            replace=replace)
                if result.enrolled:
                    persons += 1
                    fingers += len(result.fingers)
                else:
                    rejected.append({"item": i, "reference": reference,
                                     "reason": "; ".join(str(r) for r in result.rejected)
                                     or "not enrolled"})
            except DuplicateReference:
                rejected.append({"item": i, "reference": reference,
                                 "reason": "already enrolled (import with replace to replace)"})
            except (SampleError, GalleryError, ValueError) as exc:
                rejected.append({"item": i, "reference": reference, "reason": str(exc)})
            last = i + 1 == len(items)
            with self.node.db.session() as s:
                row = s.get(GalleryImport, job_id)
                assert row is not None
                row.done, row.persons, row.fingers = i + 1, persons, fingers
                row.rejected = json.dumps(rejected)
                if last:
                    row.state, row.finished_at = "done", utcnow()
                    self.node.audit.record(
                        s, row.created_by, "admin", "gallery.import", "done",
                        details={"import": job_id, "persons": persons, "fingers": fingers,
                                 "rejected": len(rejected)})
