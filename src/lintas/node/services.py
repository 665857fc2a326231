"""A running node's parts, wired together once: the gallery (with its 1:N index), the
register of lost, stolen and revoked documents, the agreements and the checks.

`Services.open(node)` is what `lintas node serve` (and the CLI commands that act as a
node user) build; the REST API and the background loops use the same objects, so an
enrolment through the API reaches the running index at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lintas.node.agreements import Agreements
from lintas.node.checks import Checks
from lintas.node.documents import DocumentRegister
from lintas.node.gallery import EnrolResult, Gallery, Sample
from lintas.node.imports import GalleryImports
from lintas.node.runtime import Node
from lintas.node.users import Principal, require_role

PRUNE_EVERY_S = 600.0  # how often the gallery journal loses its day-old entries


@dataclass
class Services:
    node: Node
    gallery: Gallery
    register: DocumentRegister
    agreements: Agreements
    checks: Checks
    imports: GalleryImports
    _pruned: float = field(default=-math.inf, repr=False)  # monotonic time of the last prune

    @classmethod
    def open(cls, node: Node, index: bool = True,
             progress: Callable[[int, int], None] | None = None) -> Services:
        """Wire a node's parts; with `index`, build the gallery's 1:N index from the
        persisted templates (the node's start-up cost grows with the gallery: about 30 s
        at 100,000 fingers), calling `progress(done, total)` as it goes."""
        gallery = Gallery(node.db)
        if index:
            gallery.use_index(progress)
        register = DocumentRegister(node.db, node.audit)
        agreements = Agreements(node)
        checks = Checks(node, agreements, gallery, register)
        return cls(node, gallery, register, agreements, checks, GalleryImports(node, gallery))

    def work(self) -> int:
        """One round of scheduled work: the gallery changes other processes made reach
        the 1:N index first, then the checks move (matching waiting probes, following the
        hub's verdicts, expiry, the retention purge); returns how many checks moved."""
        self.gallery.sync_index()
        now = time.monotonic()
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            self.gallery.prune_journal()
        return self.checks.process()

    # --- the gallery, as a node user changes it (audited) -----------------------------

    def enrol(self, actor: Principal, reference: str, fingers: Sequence[tuple[int, Sample]],
              label: str | None = None, replace: bool = False) -> EnrolResult:
        """Enrol (or with `replace`, re-enrol) one person, all fingers or none."""
        require_role(actor, "admin", to="enrol into the gallery")
        result = self.gallery.enrol(reference, fingers, label=label, replace=replace)
        with self.node.db.session() as s:
            self.node.audit.record(
                s, actor.username, actor.role, "gallery.enrol",
                "enrolled" if result.enrolled else "rejected",
                details={"reference": reference, "fingers": len(result.fingers),
                         "rejected": len(result.rejected), "replaced": result.removed})
        return result

    def delete(self, actor: Principal, reference: str) -> int:
        require_role(actor, "admin", to="delete from the gallery")
        removed = self.gallery.delete(reference)
        with self.node.db.session() as s:
            self.node.audit.record(s, actor.username, actor.role, "gallery.delete", "deleted",
                                   details={"reference": reference, "fingers": removed})
        return removed
