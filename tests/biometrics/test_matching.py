"""The 1:1 matcher on real FVC2004 impressions and on controlled transformations."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lintas.biometrics import matching, mcc
from lintas.biometrics.extraction import extract
from lintas.biometrics.images import load_image
from lintas.biometrics.minutiae import FingerView, Minutia
from lintas.biometrics.quality import nfiq2

GOOD_QUALITY = 50  # NFIQ 2


@pytest.fixture(scope="module")
def db3(fvc2004: Path) -> dict[tuple[int, int], tuple[FingerView, int | None]]:
    """DB3_B (512 ppi), impressions 1-3 of every finger: minutiae and NFIQ 2."""
    out = {}
    for finger in range(101, 111):
        for impression in range(1, 4):
            image = load_image((fvc2004 / "DB3_B" / f"{finger}_{impression}.tif").read_bytes(),
                               512)
            out[(finger, impression)] = (extract(image), nfiq2(image).score)
    return out


def transformed(view: FingerView, degrees: float, dx: int, dy: int) -> FingerView:
    """The same minutiae rotated about (300, 300) and shifted (image coordinates)."""
    rad = math.radians(degrees)
    out = []
    for m in view.minutiae:
        x, y = m.x - 300, -(m.y - 300)  # y up, so the rotation is counter-clockwise
        rx, ry = x * math.cos(rad) - y * math.sin(rad), x * math.sin(rad) + y * math.cos(rad)
        out.append(Minutia(round(rx + 300 + dx), round(-ry + 300 + dy),
                           (m.angle + degrees) % 360, m.type, m.quality))
    return FingerView(view.position, tuple(out))


def test_good_quality_genuine_pairs_pass_and_impostors_fail_at_fmr_0_1pct(db3) -> None:
    threshold = matching.calibration().threshold(0.001)
    good = {k: matching.prepare(v) for k, (v, q) in db3.items() if (q or 0) >= GOOD_QUALITY}
    assert len(good) >= 12, "too few good-quality impressions to test with"
    genuine, impostor = _separated(good, matching.compare, threshold)
    assert genuine >= 5 and impostor >= 50


def _separated(templates: dict, compare, threshold: float) -> tuple[int, int]:
    """Assert every same-finger pair of `templates` (keyed (finger, impression)) scores
    at or above `threshold` and every other pair below; return how many of each."""
    genuine = impostor = 0
    for a, b in itertools.combinations(sorted(templates), 2):
        score = compare(templates[a], templates[b])
        if a[0] == b[0]:
            genuine += 1
            assert score >= threshold, f"genuine {a} vs {b}: {score} < {threshold}"
        else:
            impostor += 1
            assert score < threshold, f"impostor {a} vs {b}: {score} >= {threshold}"
    return genuine, impostor


def test_score_is_invariant_to_rotation_and_translation(db3) -> None:
    view = db3[(101, 1)][0]
    reference = matching.prepare(view)
    itself = matching.compare(reference, reference)
    moved = matching.prepare(transformed(view, 25, 240, 170))
    assert matching.compare(moved, reference) == pytest.approx(itself, rel=0.15)
    assert itself > 0.5


def test_score_is_symmetric_enough(db3) -> None:
    a, b = matching.prepare(db3[(102, 1)][0]), matching.prepare(db3[(102, 2)][0])
    assert matching.compare(a, b) == pytest.approx(matching.compare(b, a), rel=0.25)


def test_explanation_pairs_are_real_and_add_up(db3) -> None:
    probe, reference = db3[(103, 1)][0], db3[(103, 2)][0]
    result = matching.explain(matching.prepare(probe), matching.prepare(reference))
    assert result.pairs, "a genuine comparison must pair some minutiae"
    assert sum(p.contribution for p in result.pairs) == pytest.approx(result.score)
    assert len({p.probe_index for p in result.pairs}) == len(result.pairs)
    assert len({p.reference_index for p in result.pairs}) == len(result.pairs)
    for p in result.pairs:
        assert 0 <= p.probe_index < len(probe.minutiae)
        assert 0 <= p.reference_index < len(reference.minutiae)
        # Paired minutiae point the same way once the finger's rotation is removed:
        # here both impressions are near-upright, so within 90 degrees.
        diff = (probe.minutiae[p.probe_index].angle
                - reference.minutiae[p.reference_index].angle + 180) % 360 - 180
        assert abs(diff) <= 90
    assert result.fmr == matching.calibration().fmr(result.score)


def test_empty_and_tiny_templates_score_zero() -> None:
    empty = matching.prepare(FingerView(1, ()))
    one = matching.prepare(FingerView(1, (Minutia(10, 10, 0.0),)))
    assert matching.compare(empty, empty) == 0.0
    assert matching.compare(one, empty) == 0.0
    assert matching.compare(one, one) == 0.0
    assert matching.explain(one, one).pairs == ()


@pytest.mark.parametrize("phased", [False, True])
def test_calibration_is_monotone_and_resolves_the_published_rates(phased: bool) -> None:
    cal = matching.calibration(phased)
    assert cal.impostors >= 10_000
    assert list(cal.thresholds) == sorted(cal.thresholds)
    assert all(a >= b for a, b in itertools.pairwise(cal.fmrs))
    tail = cal.tail
    assert tail is not None
    for rate in (0.01, 0.001, 1e-5, 1e-8, cal.rarest):
        threshold = cal.threshold(rate)
        assert cal.fmr(threshold) <= rate * (1 + 1e-12)
        if rate >= tail.fmr:  # counted: the smallest tabulated threshold that holds
            at = cal.thresholds.index(threshold)
            assert cal.fmrs[at] <= rate < cal.fmrs[at - 1]
        else:  # from the tail: its exact inverse
            assert cal.fmr(threshold * 0.999) > rate
    scores = np.concatenate([[0.0], np.geomspace(1e-7, 1, 400)])
    fmrs = [cal.fmr(s) for s in scores]
    assert all(a >= b for a, b in itertools.pairwise(fmrs))
    assert tail.fitted == 200 and tail.floor == 1e-10
    # Below the tail's start, no rate rarer than the impostors could show; the tail
    # takes over at the table's own rate, after FMR 0.1 % (still counted: about 11 of
    # 11,520 impostors), and no score claims less than its floor.
    assert min(f for s, f in zip(scores, fmrs, strict=True) if s < tail.score) \
        >= tail.fmr > 1 / cal.impostors
    assert tail.fmr < 1e-3 and cal.threshold(1e-3) in cal.thresholds
    assert cal.fmr(tail.score) == tail.fmr
    assert cal.fmr(float(np.nextafter(tail.score, 0))) == pytest.approx(tail.fmr, rel=1e-3)
    assert min(fmrs) == cal.fmr(1.0) == cal.rarest == tail.floor
    with pytest.raises(matching.MatchError, match="below the rarest rate"):
        cal.threshold(1e-11)
    with pytest.raises(matching.MatchError, match="fmr"):
        cal.threshold(0)


def test_a_calibration_without_a_tail_claims_no_rate_it_could_not_observe() -> None:
    cal = matching.calibration()
    table = matching.Calibration(cal.thresholds, cal.fmrs, cal.impostors, cal.source)
    assert table.fmr(1.0) == table.rarest == 1 / cal.impostors
    assert table.fmr(0.5) == table.fmr(1.0)  # strong matches all sit on the floor
    with pytest.raises(matching.MatchError, match="below the rarest rate"):
        table.threshold(1e-6)
    with pytest.raises(matching.MatchError, match="inconsistent"):
        matching.Tail(1e-4, 0.01, alpha=0.0, fitted=200, floor=1e-10)


def _shipped_json(phased: bool = False) -> dict:
    return json.loads(json.dumps(matching.calibration(phased).as_json()))


def _changed(path: str, value: object) -> dict:
    """The shipped single-view table with one field changed (`a.b[3]`), or removed
    when `value` is REMOVE."""
    data = _shipped_json()
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is REMOVE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


REMOVE = object()


def test_a_calibration_read_from_json_is_the_table_written() -> None:
    for phased in (False, True):
        shipped = matching.calibration(phased)
        assert matching.calibration_from_json(_shipped_json(phased)) == shipped
    both = matching.shipped()
    assert matching.Calibrations.from_json(json.loads(json.dumps(both.as_json()))) == both
    written = _shipped_json()  # as the benchmark writes it: extra figures are ignored
    written["tail"]["alpha_fitted"] = 3.84
    assert matching.calibration_from_json(written) == matching.calibration()


@pytest.mark.parametrize(("path", "value", "error"), [
    ("source", REMOVE, r"calibration\.source: missing"),
    ("source", "", r"calibration\.source: a description"),
    ("impostors", 10, r"calibration\.impostors: 10 is not in \[100,"),
    ("impostors", 1e4, r"calibration\.impostors: 10000\.0 is not an integer"),
    ("thresholds", "0.1", r"calibration\.thresholds: a list of 2\.\.10000 numbers"),
    ("thresholds", [0.1], r"calibration\.thresholds: a list of 2"),
    ("fmrs", [1.0, 0.5], r"calibration\.fmrs: 2 rates for 352 thresholds"),
    ("thresholds[5]", 1e-9, r"calibration\.thresholds\[5\]: 1e-09 does not ascend \(after"),
    ("thresholds[7]", float("nan"), r"calibration\.thresholds\[7\]: nan is not in"),
    ("thresholds[7]", True, r"calibration\.thresholds\[7\]: True is not a number"),
    ("fmrs[3]", 1.5, r"calibration\.fmrs\[3\]: 1\.5 is not in \[0, 1\]"),
    ("fmrs[300]", 0.9, r"calibration\.fmrs\[300\]: 0\.9 is above the rate at a lower"),
    ("tail", [1, 2], r"calibration\.tail: a JSON object"),
    ("tail.alpha", REMOVE, r"calibration\.tail\.alpha: missing"),
    ("tail.alpha", -3.3, r"calibration\.tail\.alpha: -3\.3 is not in"),
    ("tail.score", 2.0, r"calibration\.tail\.score: 2\.0 is not in \[0, 1\]"),
    ("tail.floor", 0.5, r"calibration\.tail\.floor: 0\.5 is not in \[1e-15, 0\.000694"),
    ("tail.fitted", 0, r"calibration\.tail\.fitted: 0 is not in \[1, 11520\]"),
])
def test_a_bad_calibration_table_is_refused_naming_the_field(path: str, value: object,
                                                             error: str) -> None:
    with pytest.raises(matching.MatchError, match=error):
        matching.calibration_from_json(_changed(path, value))


def test_both_tables_are_needed_and_named() -> None:
    with pytest.raises(matching.MatchError, match="calibrations: a JSON object"):
        matching.Calibrations.from_json([])
    with pytest.raises(matching.MatchError, match="phased: missing"):
        matching.Calibrations.from_json({"single": _shipped_json()})
    with pytest.raises(matching.MatchError, match=r"phased\.fmrs\[3\]"):
        matching.Calibrations.from_json({"single": _shipped_json(),
                                         "phased": _changed("fmrs[3]", 2.0)})


def test_explain_reads_the_rate_from_the_tables_given(db3) -> None:
    a, b = (matching.prepare(db3[(101, i)][0]) for i in (1, 2))
    plain = matching.explain(a, b)
    assert plain.fmr == matching.calibration().fmr(plain.score)
    own = matching.calibration_from_json(_changed("fmrs", [1.0] * 352))  # every score: FMR 1
    tables = matching.Calibrations(dataclasses.replace(own, tail=None), matching.calibration(True))
    assert matching.explain(a, b, tables).fmr == 1.0
    assert matching.compare_fingers({1: a}, {1: b}, tables).fmr == 1.0


def test_rare_rates_come_from_the_tail_and_tell_strong_matches_apart(db3) -> None:
    """DB3_B, impressions 1-3 of each finger: 30 mated and 405 impostor pairs. DB3's
    impostors score highest of the four sets, yet hardly any is given a rate below 0.1 %
    (0.4 expected if the pooled rates held for this sensor alone); nearly every mated
    pair scores beyond all 11,520 impostors of the calibration, where a table alone would
    floor them all at 1 / 11,520 and a search could not rank them."""
    cal = matching.calibration()
    views = {key: matching.prepare(view) for key, (view, _) in db3.items()}
    mated, impostors = [], []
    for a, b in itertools.combinations(sorted(views), 2):
        rate = cal.fmr(matching.compare(views[a], views[b]))
        (mated if a[0] == b[0] else impostors).append(rate)
    assert len(mated) == 30 and len(impostors) == 405
    assert sum(rate < 1e-3 for rate in impostors) <= 2
    assert sum(rate < 1 / cal.impostors for rate in mated) >= 25
    assert len(set(mated)) >= 25  # told apart, not one floor


def test_fusion_adds_evidence_and_needs_a_shared_finger(db3) -> None:
    a1, a2 = matching.prepare(db3[(104, 1)][0]), matching.prepare(db3[(104, 2)][0])
    b1, b2 = matching.prepare(db3[(105, 1)][0]), matching.prepare(db3[(105, 2)][0])
    fused = matching.compare_fingers({1: a1, 2: b1}, {1: a2, 2: b2})
    single = [matching.explain(a1, a2), matching.explain(b1, b2)]
    assert fused.evidence == pytest.approx(sum(s.evidence for s in single))
    assert set(fused.fingers) == {1, 2}
    only_thumb = matching.compare_fingers({1: a1, 2: b1}, {1: a2})
    assert set(only_thumb.fingers) == {1}
    with pytest.raises(matching.MatchError, match="no finger position"):
        matching.compare_fingers({1: a1}, {2: a2})


def test_exhaustive_scoring_equals_one_comparison_at_a_time(db3) -> None:
    """mcc.score_many (every probe against every bare gallery template, in parallel, the
    gallery's cylinders built inside) gives exactly the scores of `compare`."""
    probes = [matching.prepare(db3[(finger, 2)][0]) for finger in (101, 104, 108)]
    probes.append(matching.prepare(FingerView(1, ())))  # an empty probe scores 0
    gallery = [matching.prepare(db3[(finger, 1)][0]) for finger in range(101, 111)]
    gallery.append(matching.prepare(FingerView(1, ())))
    p_offsets = np.cumsum([0] + [p.size for p in probes])
    g_offsets = np.cumsum([0] + [g.size for g in gallery])
    scores = mcc.score_many(*(np.concatenate([getattr(p, name) for p in probes])
                              for name in ("x", "y", "theta", "bits", "valid", "usable")),
                            p_offsets, *(np.concatenate([getattr(g, name) for g in gallery])
                                         for name in ("x", "y", "theta")), g_offsets)
    expected = [[matching.compare(p, g) for g in gallery] for p in probes]
    assert scores.shape == (4, 11)
    assert scores.tolist() == expected
    assert scores[0].argmax() == 0 and scores[1].argmax() == 3  # mates found


def test_cylinder_validity_equals_the_cell_by_cell_hull_test() -> None:
    """`cylinders` decides most cells' validity from one bound per row and hull edge;
    the result must be exactly the cell-by-cell test of the method (cell centre within
    HULL_MARGIN of the minutiae's convex hull, inside the cylinder's circle)."""
    rng = np.random.default_rng(7)
    delta = 2 * mcc.RADIUS / mcc.NS
    for n, spread in ((12, 60.0), (25, 120.0), (40, 200.0), (60, 150.0), (3, 40.0)):
        x = rng.uniform(0, spread, n)
        y = rng.uniform(0, spread * 1.3, n)
        theta = rng.uniform(0, 2 * math.pi, n)
        _, valid, _ = mcc.cylinders(x, y, theta)
        hull = mcc._convex_hull(x, y)
        hx, hy = x[hull], y[hull]
        edges = mcc._hull_edges(hx, hy)
        for m in range(n):
            c, s = math.cos(theta[m]), math.sin(theta[m])
            for i in range(mcc.NS):
                for j in range(mcc.NS):
                    cu, cv = (i + 0.5) * delta - mcc.RADIUS, (j + 0.5) * delta - mcc.RADIUS
                    expected = (cu * cu + cv * cv <= mcc.RADIUS ** 2 and mcc._near_hull(
                        x[m] + c * cu - s * cv, y[m] + s * cu + c * cv, hx, hy, edges,
                        mcc.HULL_MARGIN))
                    if mcc.SLOT[i, j] < 0:  # outside the circle: not stored
                        assert not expected
                        continue
                    cell = int(mcc.SLOT[i, j]) * mcc.ND  # direction 0 of cell (i, j)
                    got = bool((int(valid[m, cell >> 6]) >> (cell & 63)) & 1)
                    assert got == expected, (n, m, i, j)


def _reference_similarities(a: matching.MatchTemplate, b: matching.MatchTemplate) -> np.ndarray:
    """The cylinder similarity by its definition, with Python integers: the share of
    differing bits over the cells valid in both, for usable cylinders at most 90° apart
    that share enough valid cells (0 otherwise)."""
    def ones(words: np.ndarray) -> int:
        return sum(bin(int(w)).count("1") for w in words)

    min_cells = mcc.MIN_MATCHABLE * mcc._circle_cells() * mcc.ND
    out = np.zeros((a.size, b.size))
    for i in range(a.size):
        for j in range(b.size):
            turn = a.theta[i] - b.theta[j]  # wrapped to [-pi, pi) the matcher's way: MINDTCT
            while turn < -math.pi:  # directions come in 11.25 degree steps, so pairs lie
                turn += 2 * math.pi  # exactly on the 90 degree limit and the rounding of
            while turn >= math.pi:  # the wrap decides them
                turn -= 2 * math.pi
            if not (a.usable[i] and b.usable[j]) or abs(turn) > mcc.MAX_DIRECTION_DIFF:
                continue
            both = a.valid[i] & b.valid[j]
            if ones(both) < min_cells:
                continue
            xa, xb = a.bits[i] & both, b.bits[j] & both
            if ones(xa) + ones(xb):
                out[i, j] = 1 - ones(xa ^ xb) / (ones(xa) + ones(xb))
    return out


def test_similarities_follow_the_definition_in_any_minutia_order(db3) -> None:
    """The fast similarities (matching order, vector popcounts, shortcuts for fully
    valid cylinders) equal the definition, and do not depend on the minutiae's order."""
    a = matching.prepare(db3[(102, 1)][0])
    b = matching.prepare(db3[(102, 2)][0])
    fast = mcc.local_similarities(a.bits, a.valid, a.usable, a.theta,
                                  b.bits, b.valid, b.usable, b.theta)
    assert np.allclose(fast, _reference_similarities(a, b), rtol=0, atol=1e-12)
    assert (fast > 0).sum() > a.size  # a real test: many comparable pairs
    rng = np.random.default_rng(3)
    pa, pb = rng.permutation(a.size), rng.permutation(b.size)
    shuffled = mcc.local_similarities(a.bits[pa], a.valid[pa], a.usable[pa], a.theta[pa],
                                      b.bits[pb], b.valid[pb], b.usable[pb], b.theta[pb])
    assert np.array_equal(shuffled, fast[np.ix_(pa, pb)])


def test_prepare_puts_minutiae_in_matching_order_and_remembers_theirs(db3) -> None:
    """Fully valid cylinders first, each group by direction; `index` maps every row back
    to the extractor's minutia."""
    view = db3[(105, 1)][0]
    t = matching.prepare(view)
    full = [mcc._ones_and_cells(t.bits[i:i + 1], t.valid[i:i + 1])[2][0] for i in range(t.size)]
    assert full == sorted(full, reverse=True) and any(full) and not all(full)
    for group in (True, False):
        angles = [t.theta[i] for i in range(t.size) if full[i] == group]
        assert angles == sorted(angles)
    assert sorted(t.index.tolist()) == list(range(len(view.minutiae)))
    for row, m in enumerate(t.index):
        assert t.x[row] == view.minutiae[m].x and t.y[row] == -view.minutiae[m].y


def test_vector_popcount_of_rows_equals_plain_counting() -> None:
    """The LLVM vector popcount of two cylinder rows, on whole arrays and on slices."""
    from numba import njit

    @njit
    def counts(x, y):  # type: ignore[no-untyped-def]
        out = np.empty((x.shape[0], y.shape[0]), dtype=np.int64)
        for i in range(x.shape[0]):
            for j in range(y.shape[0]):
                out[i, j] = mcc._and_popcount(x, i, y, j)
        return out

    rng = np.random.default_rng(11)
    x = rng.integers(0, 2 ** 63, size=(9, mcc.WORDS), dtype=np.uint64) << np.uint64(1)
    x[0] = np.uint64(2 ** 64 - 1)
    y = rng.integers(0, 2 ** 63, size=(7, mcc.WORDS), dtype=np.uint64) | np.uint64(1)
    for xs, ys in ((x, y), (x[3:], y[2:6])):
        expected = [[sum(bin(int(p) & int(q)).count("1") for p, q in zip(r, s, strict=True))
                     for s in ys] for r in xs]
        assert counts(xs, ys).tolist() == expected


@pytest.fixture(scope="module")
def db3_phases(fvc2004: Path, db3) -> dict[tuple[int, int], matching.Phases]:
    """DB3_B, impressions 1-3 of every finger, prepared at every grid phase, for the
    impressions of good quality (NFIQ 2, as in the single-view test above)."""
    from lintas.biometrics.extraction import extract_phases

    out = {}
    for (finger, impression), (_, quality) in db3.items():
        if (quality or 0) >= GOOD_QUALITY:
            image = load_image((fvc2004 / "DB3_B" / f"{finger}_{impression}.tif").read_bytes(),
                               512)
            out[(finger, impression)] = matching.prepare_phases(extract_phases(image))
    return out


def test_phased_comparison_averages_the_phases_and_has_its_own_calibration(db3_phases) -> None:
    (a, b), *_ = ((db3_phases[k], db3_phases[(k[0], 2)]) for k in sorted(db3_phases)
                  if k[1] == 1 and (k[0], 2) in db3_phases)
    per_phase = [matching.compare(a[i], b[i]) for i in range(matching.PHASES)]
    assert matching.compare_phases(a, b) == pytest.approx(sum(per_phase) / matching.PHASES)
    result = matching.explain(a, b)
    assert result.phases == matching.PHASES
    assert result.score == matching.compare_phases(a, b)  # the same score, bit for bit
    assert result.fmr == matching.calibration(phased=True).fmr(result.score)
    # The explanation is view 0's: its pairs make up view 0's own score.
    assert sum(p.contribution for p in result.pairs) == pytest.approx(per_phase[0])
    # One side with a single view (a template from another system): view 0 alone, and
    # the single-view table.
    single = matching.explain(a, b[0])
    assert single.phases == 1 and single.score == pytest.approx(per_phase[0])
    assert single.fmr == matching.calibration().fmr(per_phase[0])
    assert matching.compare_phases(a[:1], b) == matching.compare(a[0], b[0])
    fused = matching.compare_fingers({1: a}, {1: b})
    assert fused.fingers[1].phases == matching.PHASES
    with pytest.raises(matching.MatchError, match="views"):
        matching.prepare_phases([])
    with pytest.raises(matching.MatchError, match="template"):
        matching.compare_phases((), b)


def test_packed_phases_score_exactly_as_view_by_view_comparison(db3_phases) -> None:
    """compare_phases hands the compiled core every view in one call (`Phases.packed`);
    its score is exactly the mean of the views compared one at a time through
    `mcc.compare`, the unpacked entry the index and exhaustive scoring use."""
    keys = sorted(db3_phases)[:4]
    for ka, kb in itertools.combinations(keys, 2):
        a, b = db3_phases[ka], db3_phases[kb]
        one_by_one = 0.0
        for i in range(matching.PHASES):
            va, vb = a[i], b[i]
            unpacked = mcc.compare(va.x, va.y, va.theta, va.bits, va.valid, va.usable,
                                   vb.x, vb.y, vb.theta, vb.bits, vb.valid, vb.usable)[0]
            assert matching.compare(va, vb) == unpacked
            one_by_one += unpacked
        assert matching.compare_phases(a, b) == one_by_one / matching.PHASES
        # Plain sequences of views are packed on the way; views past PHASES are ignored.
        assert matching.compare_phases(list(a), tuple(b)) == matching.compare_phases(a, b)
        longer = matching.Phases((*a, a[1]))
        assert matching.compare_phases(longer, b) == matching.compare_phases(a, b)


def test_phased_genuine_pairs_pass_and_impostors_fail_at_fmr_0_1pct(db3_phases) -> None:
    threshold = matching.calibration(phased=True).threshold(0.001)
    genuine, impostor = _separated(db3_phases, matching.compare_phases, threshold)
    assert genuine >= 5 and impostor >= 50


def test_calibration_tables_resolve_every_published_rate_apart() -> None:
    """Each table has a distinct threshold for FMR 10 %, 1 % and 0.1 %: the grid is as
    fine as the scores (until 2026-12-07 all three fell on its first step)."""
    for phased in (False, True):
        cal = matching.calibration(phased=phased)
        thresholds = [cal.threshold(rate) for rate in (0.1, 0.01, 0.001)]
        assert thresholds == sorted(thresholds) and len(set(thresholds)) == 3, thresholds
        for rate, threshold in zip((0.1, 0.01, 0.001), thresholds, strict=True):
            assert rate / 2 <= cal.fmr(threshold) <= rate
