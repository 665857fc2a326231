"""The node's fingerprint gallery on real FVC2004 prints, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lintas.biometrics import formats
from lintas.biometrics.extraction import extract_template
from lintas.biometrics.images import FingerImage, load_image
from lintas.biometrics.matching import (
    PHASES,
    Calibration,
    Calibrations,
    MatchTemplate,
    calibration,
    prepare,
    shipped,
)
from lintas.biometrics.minutiae import MinutiaeTemplate
from lintas.biometrics.quality import QualityPolicy
from lintas.node import node_database
from lintas.node.audit import AuditLog
from lintas.node.gallery import (
    DuplicateReference,
    Gallery,
    GalleryError,
    GalleryTemplate,
    UnknownReference,
    _to_compare,
)
from lintas.node.models import GalleryChange, GalleryFinger, GalleryPerson, Setting
from lintas.node.users import NotPermitted, Principal
from lintas.storage import Database

PERSONS = tuple(str(p) for p in range(101, 107))  # FVC2004 DB3_B, a 512 ppi sensor


def db3_image(fvc2004: Path, person: str, impression: int) -> FingerImage:
    return load_image((fvc2004 / "DB3_B" / f"{person}_{impression}.tif").read_bytes(), ppi=512)


@pytest.fixture(scope="session")
def prints(fvc2004: Path) -> dict[tuple[str, int], MinutiaeTemplate]:
    """Impressions 1-3 of six persons, extracted once (as MINDTCT templates)."""
    return {(p, i): extract_template(db3_image(fvc2004, p, i))
            for p in PERSONS for i in (1, 2, 3)}


@pytest.fixture
def database(backend: str, new_db_url: Callable[[str], str]) -> Database:
    db = node_database(new_db_url(backend))
    db.upgrade()
    return db


@pytest.fixture
def gallery(database: Database) -> Gallery:
    return Gallery(database)


def few_minutiae(template: MinutiaeTemplate, n: int = 5) -> MinutiaeTemplate:
    view = template.views[0]
    return dataclasses.replace(template, views=(dataclasses.replace(
        view, minutiae=view.minutiae[:n]),))


def probe(template: MinutiaeTemplate, position: int = 1) -> dict[int, MatchTemplate]:
    return {position: prepare(dataclasses.replace(template.views[0], position=position))}


def test_search_finds_each_enrolled_person_first(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    added: list[GalleryTemplate] = []
    gallery.on_enrol(added.extend)
    for person in PERSONS:
        result = gallery.enrol(person, [(1, prints[person, 1]), (1, prints[person, 2])])
        assert result.enrolled and [f.impression for f in result.fingers] == [1, 2]
    assert (gallery.count(), gallery.finger_count()) == (6, 12)
    assert sorted(t.finger_id for t in added) == \
        sorted(t.finger_id for t in gallery.iter_templates())
    for person in PERSONS:
        candidates = gallery.search(probe(prints[person, 3]), limit=3)
        best = candidates[0]
        assert best.reference == person
        assert best.fmr < 1e-3 < candidates[1].fmr, "the mate stands out from impostors"
        assert best.fingers[1].comparison.pairs, "the reviewer can see the paired minutiae"
    # A restarted node reads back exactly what it compared before.
    again = Gallery(gallery.db).search(probe(prints["103", 3]), limit=1)
    assert again[0].reference == "103"
    assert again[0].fmr == gallery.search(probe(prints["103", 3]), limit=1)[0].fmr
    assert gallery.search(probe(prints["103", 3], position=2)) == [], "no shared finger"
    assert all(c.fmr <= 1e-3 for c in gallery.search(probe(prints["103", 3]), max_fmr=1e-3))


def test_a_hit_is_decided_on_the_search_rate_which_grows_with_the_gallery(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """fpir = N x fmr over the N persons searched: the same comparison that is a clear
    hit among six persons is refused as one when the gallery is large enough that an
    impostor would be expected to score as well."""
    for person in PERSONS:
        gallery.enrol(person, [(1, prints[person, 1])])
    found = gallery.search(probe(prints["104", 2]), limit=6)
    assert found[0].reference == "104"
    for c in found:
        assert c.fpir == min(1.0, 6 * c.fmr)
    mate = found[0]
    assert [c.reference for c in gallery.search(probe(prints["104", 2]),
                                                max_fpir=mate.fpir)] == ["104"]
    assert gallery.search(probe(prints["104", 2]), max_fpir=mate.fpir * 0.99) == []
    # Three more persons (impressions of other fingers): the same comparison, a larger
    # search, so a higher search rate, and the threshold it just met now refuses it.
    for person in PERSONS[:3]:
        gallery.enrol(f"x{person}", [(1, prints[person, 3])])
    again = gallery.search(probe(prints["104", 2]), limit=1)[0]
    assert (again.reference, again.fmr) == ("104", mate.fmr)
    assert again.fpir == min(1.0, 9 * mate.fmr) > mate.fpir
    assert gallery.search(probe(prints["104", 2]), max_fpir=mate.fpir) == []
    # A verification against one named person searches one person: fpir is its fmr.
    (named,) = gallery.search(probe(prints["104", 2]), within=["104"])
    assert named.fpir == named.fmr == mate.fmr
    for bad in (0, 1.5, -1e-3, True, "0.001"):
        with pytest.raises(GalleryError, match="max_fpir"):
            gallery.search(probe(prints["104", 2]), max_fpir=bad)  # type: ignore[arg-type]


def test_with_the_index_the_search_rate_counts_the_persons_it_holds(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """With the 1:N index, N comes from the persons it holds (no count query a search),
    following enrolments, deletions and another process's changes as the index does."""
    for person in PERSONS[:4]:
        gallery.enrol(person, [(1, prints[person, 1]), (2, prints[person, 2])])
    gallery.use_index()
    plain = Gallery(gallery.db)  # another process on the same database

    def best_rates() -> tuple[float, float]:
        (best,) = gallery.search(probe(prints["102", 3]), limit=1)
        assert best.reference == "102"
        return best.fpir, best.fmr

    fpir, fmr = best_rates()
    assert fpir == min(1.0, 4 * fmr)  # four persons, two fingers each: N counts persons
    gallery.enrol("105", [(1, prints["105", 1])])
    assert best_rates() == (min(1.0, 5 * fmr), fmr)
    gallery.delete("101")
    gallery.delete("103")
    assert best_rates() == (min(1.0, 3 * fmr), fmr)
    plain.enrol("106", [(1, prints["106", 1])])
    assert best_rates()[0] == min(1.0, 3 * fmr)  # not seen until the index syncs
    gallery.sync_index()
    assert best_rates()[0] == min(1.0, 4 * fmr) and gallery.count() == 4
    plain.delete("106")
    plain.update("104", [(1, prints["104", 3])])  # a change of fingers, not of persons
    gallery.sync_index()
    assert best_rates()[0] == min(1.0, 3 * fmr) and gallery.count() == 3


def test_the_index_proposes_the_same_persons_and_follows_changes(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    for person in PERSONS[:4]:
        gallery.enrol(person, [(1, prints[person, 1]), (1, prints[person, 2])])
    reported: list[tuple[int, int]] = []
    assert gallery.use_index(lambda done, total: reported.append((done, total))) == 8
    assert reported == [(8, 8)]  # built from what is persisted, one batch
    plain = Gallery(gallery.db)
    for person in PERSONS[:4]:
        indexed = gallery.search(probe(prints[person, 3]), limit=2)
        exhaustive = plain.search(probe(prints[person, 3]), limit=2)
        assert [c.reference for c in indexed][:1] == [person]
        assert indexed[0].fmr == exhaustive[0].fmr
    # With a hit threshold, the index only has the plausible persons compared in full:
    # the answer is the exhaustive one.
    for person in PERSONS:
        for fmr in (1e-3, 1e-2):
            indexed = gallery.search(probe(prints[person, 3]), limit=3, max_fmr=fmr)
            exhaustive = plain.search(probe(prints[person, 3]), limit=3, max_fmr=fmr)
            assert [(c.reference, c.fmr) for c in indexed] == \
                [(c.reference, c.fmr) for c in exhaustive]
    # Enrolled after the index was built: found through the listener.
    gallery.enrol(PERSONS[4], [(1, prints[PERSONS[4], 1])])
    assert gallery.search(probe(prints[PERSONS[4], 3]), limit=1)[0].reference == PERSONS[4]
    # Deleted: gone from the index too.
    gallery.delete(PERSONS[0])
    assert all(c.reference != PERSONS[0]
               for c in gallery.search(probe(prints[PERSONS[0], 3]), limit=10))
    assert gallery.search(probe(prints["103", 3], position=2)) == [], "no shared finger"


def test_two_finger_probes_through_the_index_as_exhaustive(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """Fused evidence can make a hit of two fingers neither of which is one alone: the
    index's shortcut must still compare every person who could reach the threshold."""
    def finger(person: str, impression: int, position: int) -> MinutiaeTemplate:
        template = prints[person, impression]
        return dataclasses.replace(template, views=(dataclasses.replace(
            template.views[0], position=position),))

    for person in PERSONS:
        gallery.enrol(person, [(1, finger(person, 1, 1)), (2, finger(person, 2, 2))])
    plain = Gallery(gallery.db)
    assert gallery.use_index() == 12
    for person in PERSONS:
        both = {**probe(prints[person, 3], 1), **probe(prints[person, 3], 2)}
        for fmr in (1e-6, 1e-4, 1e-3):
            indexed = gallery.search(both, limit=3, max_fmr=fmr)
            exhaustive = plain.search(both, limit=3, max_fmr=fmr)
            assert [(c.reference, c.fmr) for c in indexed] == \
                [(c.reference, c.fmr) for c in exhaustive]
        assert indexed and indexed[0].reference == person


def test_templates_are_stored_as_iso_2011_and_images_never(
        gallery: Gallery, fvc2004: Path) -> None:
    result = gallery.enrol("101", [(1, db3_image(fvc2004, "101", 1)),
                                   (1, db3_image(fvc2004, "101", 2))], label="case 17")
    assert result.enrolled, result.rejected
    assert all(f.nfiq2 is not None and f.nfiq2 >= 30 for f in result.fingers)
    with gallery.db.session() as s:
        records = list(s.scalars(select(GalleryFinger.template)))
    assert [formats.detect(r) for r in records] == [formats.ISO_2011] * 2
    assert all(len(r) < 8000 for r in records), "a template, not an image"
    person = gallery.get("101")
    assert person is not None and person.label == "case 17"
    assert [(f.position, f.impression) for f in person.fingers] == [(1, 1), (1, 2)]


def test_images_are_stored_and_compared_at_every_grid_phase(
        gallery: Gallery, fvc2004: Path, prints: dict[tuple[str, int], MinutiaeTemplate]
        ) -> None:
    """A finger enrolled from an image keeps MINDTCT's four grid phases as views 0-3 of
    its record, and a probe image is compared with it phase by phase, read against the
    phased calibration; a finger enrolled as minutiae (one view) is compared by view 0
    and the single-view table, and so is a one-view probe against phased fingers."""
    assert gallery.enrol("102", [(1, db3_image(fvc2004, "102", 1))]).enrolled
    assert gallery.enrol("103", [(1, prints["103", 1])]).enrolled
    with gallery.db.session() as s:
        records = dict(s.execute(select(GalleryPerson.reference, GalleryFinger.template)
                                 .join(GalleryPerson, GalleryPerson.id == GalleryFinger.person_id)
                                 ).all())
    assert [v.view for v in formats.read(records["102"]).views] == [0, 1, 2, 3]
    assert len(formats.read(records["103"]).views) == 1
    for person, phases in (("102", PHASES), ("103", 1)):
        probe_views, rejected = gallery.prepare_probe([(1, db3_image(fvc2004, person, 2))])
        assert not rejected and len(probe_views[1]) == PHASES
        (best, *_) = gallery.search(probe_views, limit=2)
        assert best.reference == person
        comparison = best.fingers[1].comparison
        assert comparison.phases == phases
        assert comparison.fmr == calibration(phased=phases == PHASES).fmr(comparison.score)
    (best, *_) = gallery.search(probe(prints["102", 2]), limit=2)  # minutiae: one view
    assert best.reference == "102" and best.fingers[1].comparison.phases == 1
    with pytest.raises(GalleryError, match="probe: finger 1 is not a MatchTemplate"):
        gallery.search({1: ()})


def test_low_quality_is_refused_with_the_officers_reason(
        database: Database, fvc2004: Path) -> None:
    strict = Gallery(database, policy=QualityPolicy(enrolment_minimum=95))
    result = strict.enrol("101", [(2, db3_image(fvc2004, "101", 1))])
    assert not result.enrolled and strict.count() == 0
    (rejection,) = result.rejected
    assert rejection.position == 2
    assert "< 95: " in rejection.reason and rejection.reason.startswith("quality ")
    assert str(rejection).startswith("finger 2 (right index): quality ")


def test_one_rejected_finger_refuses_the_whole_person(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    fingers = [(1, prints["101", 1]), (2, few_minutiae(prints["101", 2]))]
    result = gallery.enrol("101", fingers)
    assert not result.enrolled and result.fingers == ()
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "only 5 minutiae (at least 8 are needed)")]
    assert gallery.get("101") is None and gallery.finger_count() == 0
    # A bulk import may keep the acceptable fingers; never a person without any.
    partial = gallery.enrol("101", fingers, partial=True)
    assert partial.enrolled and [f.position for f in partial.fingers] == [1]
    assert len(partial.rejected) == 1
    nothing = gallery.enrol("102", [(1, few_minutiae(prints["102", 1]))], partial=True)
    assert not nothing.enrolled and gallery.get("102") is None and gallery.count() == 1


def test_a_known_reference_is_refused_unless_replaced(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    first = gallery.enrol("101", [(1, prints["101", 1]), (1, prints["101", 2])], label="old")
    removed: list[int] = []
    gallery.on_delete(removed.extend)
    with pytest.raises(DuplicateReference, match="'101' is already enrolled"):
        gallery.enrol("101", [(1, prints["101", 3])])
    replaced = gallery.enrol("101", [(3, prints["101", 3])], label="new", replace=True)
    assert replaced.enrolled and replaced.removed == 2
    assert sorted(removed) == sorted(f.id for f in first.fingers)
    person = gallery.get("101")
    assert person is not None and person.label == "new"
    assert [(f.position, f.impression) for f in person.fingers] == [(3, 1)]


def test_update_replaces_only_the_positions_given(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    gallery.enrol("101", [(1, prints["101", 1]), (1, prints["101", 2]), (2, prints["102", 1])])
    before = gallery.get("101")
    assert before is not None
    removed: list[int] = []
    added: list[GalleryTemplate] = []
    gallery.on_delete(removed.extend)
    gallery.on_enrol(added.extend)
    result = gallery.update("101", [(1, prints["101", 3])])
    assert result.enrolled and result.removed == 2
    after = gallery.get("101")
    assert after is not None and after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    assert [(f.position, f.impression) for f in after.fingers] == [(1, 1), (2, 1)]
    kept = [f.id for f in before.fingers if f.position == 2]
    assert [f.id for f in after.fingers if f.position == 2] == kept
    assert sorted(removed) == sorted(f.id for f in before.fingers if f.position == 1)
    assert [(t.reference, t.position) for t in added] == [("101", 1)]
    with pytest.raises(UnknownReference, match="no person 'nobody'"):
        gallery.update("nobody", [(1, prints["101", 3])])
    refused = gallery.update("101", [(1, few_minutiae(prints["101", 1]))])
    assert not refused.enrolled and gallery.get("101") == after, "nothing changed"


def test_delete_cascades_to_the_fingers(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    gallery.enrol("101", [(1, prints["101", 1]), (1, prints["101", 2])])
    gallery.enrol("102", [(1, prints["102", 1])])
    removed: list[int] = []
    gallery.on_delete(removed.extend)
    assert gallery.delete("101") == 2 and len(removed) == 2
    with gallery.db.session() as s:
        left = s.scalar(select(func.count()).select_from(GalleryFinger)
                        .where(GalleryFinger.id.in_(removed)))
    assert left == 0
    assert gallery.get("101") is None and gallery.count() == 1 and gallery.finger_count() == 1
    assert [p.reference for p in gallery.persons()] == ["102"]
    with pytest.raises(UnknownReference):
        gallery.delete("101")


BAD_REQUESTS: list[tuple[Callable[[Gallery, MinutiaeTemplate], object], str]] = [
    (lambda g, t: g.enrol("", [(1, t)]), "reference: 1..64 characters"),
    (lambda g, t: g.enrol(" 101", [(1, t)]), "reference: ' 101' has leading"),
    (lambda g, t: g.enrol("x" * 65, [(1, t)]), "reference: 1..64"),
    (lambda g, t: g.enrol("101", []), "fingers: at least one finger"),
    (lambda g, t: g.enrol("101", [(11, t)]), r"fingers\[0\]: finger position 11 is not 1..10"),
    (lambda g, t: g.enrol("101", [(1, b"png")]), r"fingers\[0\]: a FingerImage"),
    (lambda g, t: g.enrol("101", [(1, t)], label="x" * 201), "label: text of at most 200"),
    (lambda g, t: g.search({}), "probe: at least one finger"),
    (lambda g, t: g.search({0: prepare(t.views[0])}), "probe: finger position 0"),
    (lambda g, t: g.search({1: prepare(t.views[0])}, limit=0), "limit: 0"),
    (lambda g, t: g.prepare_probe([(1, t), (1, t)]), "position 1 is given more than once"),
]


def test_bad_requests_name_the_field_and_write_nothing(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    for call, message in BAD_REQUESTS:
        with pytest.raises(GalleryError, match=message):
            call(gallery, prints["101", 1])
    assert gallery.count() == 0


def test_persons_compared_in_full_after_the_index() -> None:
    evidence = {"a": 5.0, "b": 1.2, "c": 0.5, "d": 0.1}
    # One finger at FMR 0.1 %: 3 decades are needed, 1 with the margin: a and b.
    assert _to_compare(evidence, 1, 1, 1e-3) == ["a", "b"]
    # Two fingers could reach 3 decades with 1.5 each: with the margin, everyone.
    assert _to_compare(evidence, 2, 1, 1e-3) == ["a", "b", "c", "d"]
    assert _to_compare(evidence, 1, 1, None) == ["a", "b", "c", "d"]
    # Nobody plausible: still the `limit` best, so that a no-hit costs what a hit costs.
    assert _to_compare({"x": 0.2, "y": 0.1, "z": 0.05, "w": 0.0}, 1, 3, 1e-3) == ["x", "y", "z"]


def test_changes_made_by_another_process_reach_the_index(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """A `lintas gallery` command beside a serving node, or a second node process on the
    same database, is another Gallery object: its changes come through the journal."""
    first, second, third, fourth, fifth = PERSONS[:5]
    for person in (first, second, third):
        gallery.enrol(person, [(1, prints[person, 1])])
    assert gallery.use_index() == 3
    assert gallery.sync_index() == 0, "what the index was built from is not replayed"
    other = Gallery(gallery.db)

    def found(person: str, by: str | None = None) -> list[str]:
        return [c.reference for c in gallery.search(probe(prints[by or person, 3]), limit=3,
                                                    max_fmr=1e-3)]

    other.enrol(fourth, [(1, prints[fourth, 1])])
    assert fourth not in found(fourth), "not yet: the index has not seen the change"
    assert gallery.sync_index() == 1
    assert found(fourth)[:1] == [fourth]
    assert gallery.sync_index() == 0
    gallery.enrol(fifth, [(1, prints[fifth, 1])])  # its own change: applied at once
    assert gallery.sync_index() == 0 and found(fifth)[:1] == [fifth]

    other.delete(first)
    # Re-enrolled with another person's print: on SQLite the new finger takes the id
    # the old one had, so only re-reading the stored record gets it right.
    other.enrol(second, [(1, prints[third, 2])], replace=True)
    assert gallery.sync_index() == 3  # first's finger, second's old and new one
    assert first not in found(first)
    plain = Gallery(gallery.db)
    for person in PERSONS[:5]:
        indexed = gallery.search(probe(prints[person, 3]), limit=3)
        exhaustive = plain.search(probe(prints[person, 3]), limit=3)
        assert [(c.reference, c.fmr) for c in indexed] == \
            [(c.reference, c.fmr) for c in exhaustive[:len(indexed)]]
    assert set(found(third)) == {second, third}

    # Pruned journal: new changes still come through.
    assert gallery.prune_journal(keep=timedelta(0)) == 8  # every change so far
    other.delete(third)
    assert gallery.sync_index() == 1 and third not in found(third)


def test_a_change_committed_after_a_later_one_is_not_lost(
        new_db_url: Callable[[str], str],
        prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """On PostgreSQL, ids come from a sequence when a row is inserted, not when it is
    committed: a slow enrolment can commit after a quicker one with a higher journal id.
    The look-back of sync_index must still pick it up. (SQLite has one writer at a time:
    there, journal ids commit in order.)"""
    database = node_database(new_db_url("postgresql"))
    database.upgrade()
    gallery = Gallery(database)
    slow_person, quick_person = PERSONS[0], PERSONS[1]
    gallery.enrol(PERSONS[2], [(1, prints[PERSONS[2], 1])])
    gallery.use_index()
    record = formats.write(prints[slow_person, 1], formats.ISO_2011)
    slow = Session(gallery.db.engine)
    try:  # an enrolment by another process, written but not yet committed
        now = datetime.now(UTC)
        person = GalleryPerson(reference=slow_person, label=None, created_at=now,
                               updated_at=now)
        slow.add(person)
        slow.flush()
        finger = GalleryFinger(person_id=person.id, position=1, impression=1,
                               template=record, nfiq2=None, minutiae_count=len(
                                   prints[slow_person, 1].views[0].minutiae), created_at=now)
        slow.add(finger)
        slow.flush()
        change = GalleryChange(finger_id=finger.id, at=now)
        slow.add(change)
        slow.flush()
        Gallery(gallery.db).enrol(quick_person, [(1, prints[quick_person, 1])])
        assert gallery.sync_index() == 1  # the quick one; the slow one is not visible yet
        slow.commit()
    finally:
        slow.close()
    assert gallery.sync_index() == 1  # the slow one, behind the newest id seen
    for person in (slow_person, quick_person):
        assert [c.reference for c in gallery.search(probe(prints[person, 3]), limit=1)] == [
            person]


def test_a_phased_template_is_enrolled_whole_and_other_multi_view_ones_refused(
        gallery: Gallery, fvc2004: Path) -> None:
    """A record a border system made with the node's extractor (the grid phases as views
    0-3) enrols as is, scaled to 500 ppi view by view; more views than phases, or a view
    of another finger, is refused by name."""
    from lintas.biometrics.extraction import extract_phases

    image = db3_image(fvc2004, "104", 1)
    views = extract_phases(image, 1)
    phased = MinutiaeTemplate(image.width, image.height, views)
    assert gallery.enrol("104", [(1, phased)]).enrolled
    at_1000 = MinutiaeTemplate(image.width * 2, image.height * 2, tuple(
        dataclasses.replace(v, minutiae=tuple(dataclasses.replace(m, x=2 * m.x, y=2 * m.y)
                                              for m in v.minutiae)) for v in views),
        resolution_x=394, resolution_y=394)
    assert gallery.enrol("105", [(1, at_1000)]).enrolled
    with gallery.db.session() as s:
        stored = [formats.read(r) for r in s.scalars(select(GalleryFinger.template)
                                                       .order_by(GalleryFinger.id))]
    assert [len(t.views) for t in stored] == [PHASES, PHASES]
    assert stored[0].views == stored[1].views  # the same minutiae, back at 500 ppi
    too_many = dataclasses.replace(phased, views=(*views, dataclasses.replace(views[0], view=4)))
    refused = gallery.enrol("106", [(1, too_many)])
    assert not refused.enrolled
    assert "holds 5 finger views, not one impression" in refused.rejected[0].reason
    other = dataclasses.replace(phased, views=(views[0], dataclasses.replace(views[1],
                                                                             position=2)))
    refused = gallery.enrol("106", [(1, other)])
    assert "the minutiae are of finger 2 (right index), not of finger 1" in \
        refused.rejected[0].reason


def test_the_index_picks_the_same_keys_at_start_up_as_on_enrolment(
        database: Database, fvc2004: Path) -> None:
    """The index built from stored records at start-up (minutiae of every phase read
    back, recurring ones preferred for keys) holds the same keys as the index that
    followed the enrolment (the prepared phases), so a restart changes no search."""
    following = Gallery(database)
    following.use_index()
    for person in ("101", "102"):
        assert following.enrol(person, [(1, db3_image(fvc2004, person, 1))]).enrolled
    restarted = Gallery(database)
    assert restarted.use_index() == 2
    assert following._index is not None and restarted._index is not None
    a, b = following._index[1], restarted._index[1]
    for finger_id in a.slots:
        sa, sb = a.slots[finger_id], b.slots[finger_id]
        assert a.code_count[sa] == b.code_count[sb] > 0
        assert a.code_xy[sa].tolist() == b.code_xy[sb].tolist()
        assert a.code_bits[sa].tolist() == b.code_bits[sb].tolist()


def scaled(tables: Calibrations, factor: float) -> Calibrations:
    """The tables of a sensor whose impostors match `factor` times as often."""
    def one(t: Calibration) -> Calibration:
        tail = t.tail
        assert tail is not None
        return Calibration(t.thresholds, tuple(min(1.0, r * factor) for r in t.fmrs),
                           t.impostors, f"{t.source}, x{factor}",
                           dataclasses.replace(tail, fmr=tail.fmr * factor,
                                               floor=tail.floor * factor))
    return Calibrations(one(tables.single), one(tables.phased))


def test_a_nodes_own_calibration_sets_the_rates_of_every_search(
        gallery: Gallery, prints: dict[tuple[str, int], MinutiaeTemplate]) -> None:
    """A node with its own sensors sets its own tables: they give the rates of the next
    search, through the index or not, in this process and in another one on the same
    database; the change is audited, admins only, and reset restores the shipped ones."""
    for person in PERSONS:
        gallery.enrol(person, [(1, prints[person, 1])])
    other = Gallery(gallery.db)  # another process, e.g. a serving node beside the CLI
    other.use_index()
    assert gallery.calibrations() == shipped() and not gallery.own_calibrations()
    before = gallery.search(probe(prints["105", 2]), limit=1)[0]
    assert before.reference == "105"
    score = before.fingers[1].score
    assert before.fmr == pytest.approx(shipped().single.fmr(score), rel=1e-9)  # fused: 10^-evidence

    own = scaled(shipped(), 10.0)
    with pytest.raises(NotPermitted, match="role"):
        gallery.set_calibrations(own, Principal("officer1", "officer"))
    assert not gallery.own_calibrations()
    gallery.set_calibrations(own, Principal("cli:admin", "admin"))
    assert gallery.own_calibrations() and gallery.calibrations() == own
    for g in (gallery, other):
        after = g.search(probe(prints["105", 2]), limit=1)[0]
        assert (after.reference, after.fingers[1].score) == ("105", score)
        assert after.fmr == pytest.approx(own.single.fmr(score), rel=1e-9)
        assert after.fmr == pytest.approx(10 * before.fmr, rel=1e-9)
        assert after.fpir == min(1.0, 6 * after.fmr)

    gallery.set_calibrations(None, Principal("cli:admin", "admin"))
    assert other.search(probe(prints["105", 2]), limit=1)[0].fmr == before.fmr
    actions = [(e.action, e.outcome, e.actor) for e in AuditLog(gallery.db).entries()]
    assert actions == [("gallery.calibration", "set", "cli:admin"),
                       ("gallery.calibration", "reset", "cli:admin")]

    with gallery.db.session() as s:  # a row damaged outside Lintas: refused, not guessed
        s.add(Setting(key="calibration", value='{"single": {}}'))
    with pytest.raises(GalleryError, match=r"calibration: .*phased: missing"):
        gallery.search(probe(prints["105", 2]))
