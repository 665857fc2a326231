"""Bulk gallery imports in the background: progress kept in the database, a batch of the
wrong shape refused whole, a job cut short by a restart marked interrupted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lintas.node.gallery import Gallery, GalleryError
from lintas.node.imports import GalleryImports, ImportItem, ImportStatus
from lintas.node.models import GalleryImport
from lintas.node.runtime import Node
from lintas.node.samples import FingerInput
from lintas.node.users import NotPermitted, Principal
from lintas.storage import utcnow

ADMIN = Principal("ada", "admin")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def finished(imports: GalleryImports, job_id: str) -> ImportStatus:
    deadline = time.monotonic() + 60
    while (job := imports.get(job_id)) is not None and job.state == "running":
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.05)
    assert job is not None
    return job


def test_import_progress_and_rejections(make_node: Callable[..., Node], fvc2004: Path) -> None:
    node = make_node("IDN")
    gallery = Gallery(node.db)
    imports = GalleryImports(node, gallery)

    def tif(name: str) -> FingerInput:
        return FingerInput(3, "image", (fvc2004 / "DB3_B" / f"{name}.tif").read_bytes(), 512)

    job = imports.start(ADMIN, [ImportItem("101", [tif("101_1")]),
                                ImportItem("102", [FingerInput(3, "image", b"not an image")]),
                                ImportItem("103", [tif("103_1"), tif("103_2")])])
    assert job.total == 3
    done = finished(imports, job.id)
    assert (done.state, done.done, done.persons, done.fingers) == ("done", 3, 2, 3)
    assert [(r["item"], r["reference"]) for r in done.rejected] == [(1, "102")]
    assert "fingers[0].data" in str(done.rejected[0]["reason"])
    assert gallery.count() == 2
    # Again without replace: both already enrolled, reported as such, nothing changed.
    again = finished(imports, imports.start(ADMIN, [ImportItem("101", [tif("101_2")]),
                                                    ImportItem("103", [tif("103_3")])]).id)
    assert again.persons == 0 and all("already enrolled" in str(r["reason"])
                                      for r in again.rejected)
    actions = [(x.action, x.outcome) for x in node.audit.entries()]
    assert actions.count(("gallery.import", "started")) == 2
    assert actions.count(("gallery.import", "done")) == 2


def test_bad_batches_are_refused_whole(make_node: Callable[..., Node]) -> None:
    node = make_node("IDN")
    imports = GalleryImports(node, Gallery(node.db))
    with pytest.raises(NotPermitted):
        imports.start(Principal("olivia", "officer"), [ImportItem("1", [])])
    with pytest.raises(GalleryError, match="persons: 1 to 1000"):
        imports.start(ADMIN, [])
    with pytest.raises(GalleryError, match=r"persons\[1\]\.fingers"):
        imports.start(ADMIN, [ImportItem("1", [FingerInput(1, "image", b"x")]),
                              ImportItem("2", [])])
    assert imports.list() == []


def test_a_job_cut_short_is_marked_interrupted(make_node: Callable[..., Node]) -> None:
    node = make_node("IDN")
    with node.db.session() as s:
        s.add(GalleryImport(id="00000000-0000-4000-8000-000000000001", state="running",
                            created_by="ada", created_at=utcnow(), total=10, done=4,
                            persons=4, fingers=8, rejected="[]"))
    imports = GalleryImports(node, Gallery(node.db))  # what a restarted node builds
    (job,) = imports.list()
    assert (job.state, job.done, job.total) == ("interrupted", 4, 10)
    assert job.finished_at is not None
