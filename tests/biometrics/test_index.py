"""The 1:N index on real FVC2004 impressions: pruning keeps the mate, updates apply."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from lintas.biometrics import index, matching
from lintas.biometrics.extraction import extract
from lintas.biometrics.images import load_image
from lintas.biometrics.minutiae import FingerView


@pytest.fixture(scope="module")
def db3(fvc2004: Path) -> dict[tuple[int, int], matching.MatchTemplate]:
    out = {}
    for finger in range(101, 111):
        for impression in (1, 2, 3):
            data = (fvc2004 / "DB3_B" / f"{finger}_{impression}.tif").read_bytes()
            out[(finger, impression)] = matching.prepare(extract(load_image(data, 512)))
    return out


def gallery(db3: dict, capacity: int = 4) -> index.IndexShard:
    shard = index.IndexShard(capacity=capacity)  # small, so that it has to grow
    for finger in range(101, 111):
        shard.add(finger, db3[(finger, 1)])
    return shard


def test_search_ranks_the_mate_first_like_exhaustive_matching(db3) -> None:
    shard = gallery(db3)
    assert len(shard) == 10
    agree = found = 0
    for finger in range(101, 111):
        for impression in (2, 3):
            probe = db3[(finger, impression)]
            result = index.search_shards([shard], probe, limit=3)
            exhaustive = max(range(101, 111),
                             key=lambda g, p=probe: matching.compare(p, db3[(g, 1)]))
            found += result[0].key == finger
            agree += result[0].key == exhaustive
            assert [c.score for c in result] == sorted((c.score for c in result), reverse=True)
    # With ten fingers the shortlist holds them all and stage 2 keeps every minutia: the
    # index agrees with exhaustive matching.
    assert agree == 20
    assert found >= 16


def test_remove_and_replace(db3) -> None:
    shard = gallery(db3)
    probe = db3[(104, 2)]
    assert index.search_shards([shard], probe, limit=1)[0].key == 104
    assert shard.remove(104) is True
    assert shard.remove(104) is False
    assert all(c.key != 104 for c in index.search_shards([shard], probe, limit=10))
    assert len(shard) == 9
    shard.add(104, db3[(104, 3)])  # enrol again, from another impression
    assert index.search_shards([shard], probe, limit=1)[0].key == 104
    shard.add(104, db3[(105, 1)])  # the same key replaces, never duplicates
    keys = [c.key for c in index.search_shards([shard], probe, limit=20)]
    assert keys.count(104) == 1 and len(shard) == 10


def test_a_shard_is_a_plain_object(db3) -> None:
    shard = gallery(db3)
    copy = pickle.loads(pickle.dumps(shard))
    probe = db3[(107, 2)]
    assert index.search_shards([copy], probe) == index.search_shards([shard], probe)
    # Two shards together answer as one holding everything.
    first, second = index.IndexShard(), index.IndexShard()
    for finger in range(101, 111):
        (first if finger % 2 else second).add(finger, db3[(finger, 1)])
    merged = index.search_shards([first, second], probe, limit=5)
    assert [c.key for c in merged] == [c.key for c in index.search_shards([shard], probe,
                                                                          limit=5)]


def test_memory_per_finger_is_under_one_kib(db3) -> None:
    shard = gallery(db3)
    mean_minutiae = np.mean([db3[(finger, 1)].size for finger in range(101, 111)])
    assert shard.bytes_per_finger == pytest.approx(
        index.IndexShard().bytes_per_finger + 4 * mean_minutiae)
    # The fixed part leaves room for 89 minutiae a finger on average within 1 KiB.
    assert index.IndexShard().bytes_per_finger + 4 * 89 <= 1024


def test_removed_fingers_space_is_reclaimed(db3) -> None:
    """Removing fingers frees their minutiae from the pool once enough are dead, and the
    fingers left are still found."""
    shard = index.IndexShard()
    template = db3[(101, 1)]
    for key in range(400):  # 400 copies, so that the dead space passes the threshold
        shard.add(key, template)
    used = shard.pool_size
    for key in range(1, 400):
        shard.remove(key)
    assert len(shard) == 1 and shard.pool_size < used
    assert shard.pool_size - shard.pool_garbage == template.size  # live minutiae
    shard.add(500, db3[(102, 1)])
    assert index.search_shards([shard], db3[(101, 2)], limit=1)[0].key == 0
    assert index.search_shards([shard], db3[(102, 2)], limit=1)[0].key == 500


def test_empty_shard_and_empty_probe(db3) -> None:
    assert index.search_shards([index.IndexShard()], db3[(101, 1)]) == []
    shard = gallery(db3)
    assert index.search_shards([shard], matching.prepare(FingerView(1, ()))) == []


def test_bulk_build_keeps_each_fingers_minutiae(db3) -> None:
    """Fingers added in bulk keep all their minutiae (up to MAX_STORED_MINUTIAE), packed
    to within half a pixel and half a direction step, in their original order."""
    fingers = list(range(101, 111))
    bulk = index.IndexShard(capacity=2)  # small, so that it has to grow
    templates = [db3[(finger, 1)] for finger in fingers]
    offsets = np.cumsum([0] + [t.size for t in templates])
    bulk.add_many(np.array(fingers), np.concatenate([t.x for t in templates]),
                  np.concatenate([t.y for t in templates]),
                  np.concatenate([t.theta for t in templates]), offsets)
    assert len(bulk) == 10 and bulk.keys[:10].tolist() == fingers
    for slot, t in enumerate(templates):
        count = int(bulk.minutiae_count[slot])
        assert count == t.size
        x, y, theta = index._unpack(bulk.pool, bulk.minutiae_start, bulk.origin, slot, count)
        assert np.abs(x - t.x).max() <= 0.5 and np.abs(y - t.y).max() <= 0.5
        turn = np.angle(np.exp(1j * (theta - t.theta)))
        assert np.abs(turn).max() <= index.MINUTIA_ANGLE_UNIT / 2 + 1e-9
        assert 0 < bulk.code_count[slot] <= index.KEYS_PER_FINGER
    with pytest.raises(ValueError, match="keys"):
        bulk.add_many(np.array([101]), templates[0].x, templates[0].y, templates[0].theta,
                      np.array([0, templates[0].size]))


def stage1_reference(shard: index.IndexShard, keys: index.ProbeKeys, slot: int) -> float:
    """Stage 1's score of one finger, written plainly from its definition."""
    def ones(word: int) -> int:
        return bin(word).count("1")

    def turn(a: int, b: int) -> int:
        d = (a - b) % 65536
        return min(d, 65536 - d)

    found = []  # (probe key, finger key, similarity above the floor)
    for a in range(keys.bits.shape[0]):
        best, best_b = index.SIMILARITY_FLOOR, -1
        for b in range(int(shard.code_count[slot])):
            if turn(int(keys.theta[a]), int(shard.code_theta[slot, b])) > 16384:
                continue
            p = [int(w) for w in keys.bits[a]]
            g = [int(shard.code_bits[slot, w, b]) for w in range(index.CODE_WORDS)]
            total = sum(map(ones, p)) + sum(map(ones, g))
            sim = 2 * sum(ones(u & v) for u, v in zip(p, g, strict=True)) / total if total else 0
            if sim > best:
                best, best_b = sim, b
        if best_b >= 0:
            found.append((a, best_b, best - index.SIMILARITY_FLOOR))
    best_total = 0.0
    for a, b, sim in found:
        rotation = int(shard.code_theta[slot, b]) - int(keys.theta[a])
        total = sim
        for a2, b2, sim2 in found:
            if (a2, b2) == (a, b) or b2 == b:
                continue
            if turn(rotation, int(shard.code_theta[slot, b2]) - int(keys.theta[a2])) > \
                    index.PAIR_ROTATION:
                continue
            dp = np.hypot(*(keys.xy[a].astype(float) - keys.xy[a2]))
            dg = np.hypot(*(shard.code_xy[slot, b].astype(float) - shard.code_xy[slot, b2]))
            if abs(dp - dg) <= index.PAIR_DISTANCE:
                total += sim2
        best_total = max(best_total, total)
    return best_total


def test_stage1_scores_follow_their_definition(db3) -> None:
    shard = gallery(db3)
    for probe in (db3[(101, 2)], db3[(107, 3)]):
        keys = index.probe_keys(probe)
        scores = dict((slot, score) for score, slot in shard.shortlist(keys, limit=10))
        assert len(scores) == 10
        for slot in range(10):
            assert scores[slot] == pytest.approx(stage1_reference(shard, keys, slot), abs=1e-5)


def test_recurring_marks_the_minutiae_every_other_extraction_repeats() -> None:
    x, y = np.array([10.0, 50.0, 90.0]), np.array([10.0, 10.0, 10.0])
    theta = np.array([0.0, 1.0, 2.0])
    same = (x + 3, y - 3, theta + 0.3)  # within 6 px and 35 degrees: all recur
    assert index.recurring(x, y, theta, [same]).tolist() == [True, True, True]
    moved = (np.array([10.0, 58.0, 90.0]), y, np.array([0.0, 1.0, 2.0 + np.pi]))
    assert index.recurring(x, y, theta, [same, moved]).tolist() == [True, False, False]
    assert index.recurring(x, y, theta, []).all()  # nothing to compare with: no preference
    assert not index.recurring(x, y, theta, [(np.zeros(0),) * 3]).any()


def test_keys_are_taken_among_minutiae_recurring_in_every_phase(fvc2004: Path) -> None:
    """With its grid phases, a finger's keys (and a probe's) are centred on minutiae that
    every phase repeats, where there are enough of them; a phased probe still finds its
    mate, and stage 2 scores view 0 as a one-view probe would."""
    from lintas.biometrics.extraction import extract_phases

    phased = {}
    for finger in (101, 102, 103):
        for impression in (1, 2):
            data = (fvc2004 / "DB3_B" / f"{finger}_{impression}.tif").read_bytes()
            phased[finger, impression] = matching.prepare_phases(
                extract_phases(load_image(data, 512)))
    shard = index.IndexShard()
    for finger in (101, 102, 103):
        shard.add(finger, phased[finger, 1])
    for finger in (101, 102, 103):
        view = phased[finger, 1][0]
        recur = index.recurring_in(phased[finger, 1])
        assert 0.4 < recur.mean() < 1.0  # most minutiae recur, not all
        slot = shard.slots[finger]
        keys = {tuple(p) for p in shard.code_xy[slot, : shard.code_count[slot]].tolist()}
        recurring = {(round(x), round(y)) for x, y in zip(view.x[recur], view.y[recur],
                                                          strict=True)}
        assert len(keys) == index.KEYS_PER_FINGER and keys <= recurring
        probe = index.probe_keys(phased[finger, 2])
        assert {tuple(p) for p in probe.xy.tolist()} <= {
            (round(x), round(y)) for x, y in zip(
                probe.template.x[index.recurring_in(phased[finger, 2])],
                probe.template.y[index.recurring_in(phased[finger, 2])], strict=True)}
        best = index.search_shards([shard], phased[finger, 2], limit=1)[0]
        assert best.key == finger
        assert best.score == pytest.approx(matching.compare(phased[finger, 2][0], view))
    with pytest.raises(ValueError, match="recur"):
        shard.add_many(np.array([7]), np.zeros(3), np.zeros(3), np.zeros(3),
                       np.array([0, 3]), np.ones(2, dtype=bool))
