"""1:N search: a compact in-memory index that prunes, and the full matcher that ranks.

Why our own: no maintained Python package indexes minutiae templates. The design follows
the idea of MCC indexing (Cappelli, Ferrara, Maltoni, "Fingerprint indexing based on
Minutia Cylinder-Code", IEEE TPAMI 33(5), 2011), simplified to fit under 1 KiB per finger:

- **Stage 1 (pruning).** Each finger keeps KEYS_PER_FINGER "key" cylinders: those of
  minutiae near the centre of its minutiae (the area every impression captures), taken
  outwards from the centre at least KEY_SPACING apart so that they cover enough of it to
  meet an off-centre probe, and, where the impression was extracted at the grid phases
  (`lintas.biometrics.extraction.extract_phases`), among the minutiae that recur in
  every phase first (`recurring`): a false minutia rarely recurs, and a key centred on
  one can never meet its counterpart in another impression. Pooled from 16 x 16 x 6 to
  8 x 8 x 6 cells (48 bytes), with their directions and positions. A probe's PROBE_KEYS
  key cylinders (chosen the same way, PROBE_KEY_SPACING apart) are compared with every
  finger's key cylinders
  (similarity 2|a & b| / (|a| + |b|), the bit MCC similarity without the cell validity
  masks: key cylinders are central, so nearly all their cells are valid, and dropping
  the masks makes a key comparison six popcounts); a finger's stage-1 score is the
  largest total of best key pairs that agree on one rigid placement. This is a linear
  scan compiled with numba and run in parallel over the shard.
- **Stage 2 (ranking).** The SHORTLIST best fingers of stage 1 are compared with the full
  matcher, their cylinders rebuilt from the minutiae the shard keeps of each finger:
  all of them (up to MAX_STORED_MINUTIAE, nearest the centre first), packed in 4 bytes
  each: 12 bits of x and of y from the finger's own origin, and the direction in 256
  steps (the resolution of ISO/IEC 19794-2, which the gallery stores). Keeping fewer
  (the 64 most central) measured worse: it changes the scores the full matcher gives
  (macro EER 6.40 % -> 8.45 % on FVC2004 B), so stage 2 would disagree with exhaustive
  matching. The minutiae live in one pool array, each finger a run of it.

A shard is a plain object of numpy arrays (`IndexShard`): it can be pickled and sent to
another process or machine (e.g. a `ray` actor) as is; `search_shards` merges the
shortlists of several shards. It is built from persisted templates at start-up and
updated with `add` and `remove` on enrol and delete.

Memory per finger: KEYS_PER_FINGER x (48 + 2 + 4) bytes of keys, 4 bytes a minutia
plus a 4-byte origin and 5 bytes locating them, 8 bytes of caller key and 2 of
bookkeeping: `IndexShard.bytes_per_finger` (667 bytes plus 4 a minutia, so under 1 KiB
while fingers average fewer than 89 minutiae).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from lintas.biometrics import matching, mcc

KEYS_PER_FINGER = 12
PROBE_KEYS = 24
MAX_STORED_MINUTIAE = 255
SHORTLIST = 256
POOLED = 8  # spatial cells per side after pooling
CODE_WORDS = mcc.ND  # one 64-bit word per direction: bit (i * 8 + j) is cell (i, j)
KEY_SPACING = 30.0  # px between a finger's key minutiae, where it has enough of them
PROBE_KEY_SPACING = 20.0  # and between a probe's
SIMILARITY_FLOOR = 0.5  # key pairs less similar than this do not count in stage 1
PAIR_DISTANCE = 15.0  # px: two key pairs agree when their distances differ by at most this
PAIR_ROTATION = 65536 // 12  # and their rotations by at most 30 degrees (angle units)
ANGLE_UNIT = 2 * math.pi / 65536
COORDINATE_BITS = 12  # a stored minutia's x and y, from the finger's origin (0..4095 px)
MINUTIA_ANGLE_UNIT = 2 * math.pi / 256
RECUR_DISTANCE = 6.0  # px: a minutia recurs in another phase's extraction within this
RECUR_TURN = math.radians(35)  # and this turn (MINDTCT's directions come in 11.25° steps)
NOT_FIRST = 1e12  # added to a non-recurring minutia's squared distance from the centre

Probe = matching.MatchTemplate | Sequence[matching.MatchTemplate]  # one view, or phases


@njit(cache=True)
def _pool(bits):  # type: ignore[no-untyped-def]
    """16 x 16 x ND cylinders to 8 x 8 x ND: a pooled bit is set when any of its four
    cells is (bits are only ever set in valid cells)."""
    n = bits.shape[0]
    out_bits = np.zeros((n, CODE_WORDS), dtype=np.uint64)
    for m in range(n):
        for pi in range(POOLED):
            for pj in range(POOLED):
                for k in range(mcc.ND):
                    on = False
                    for di in range(2):
                        for dj in range(2):
                            slot = mcc.SLOT[2 * pi + di, 2 * pj + dj]
                            if slot < 0:  # outside the circle: never set
                                continue
                            cell = slot * mcc.ND + k
                            if (bits[m, cell >> 6] >> np.uint64(cell & 63)) & np.uint64(1):
                                on = True
                    if on:  # direction-major: word k holds direction k of all 64 cells
                        out_bits[m, k] |= np.uint64(1) << np.uint64(pi * POOLED + pj)
    return out_bits


@njit(cache=True, inline="always")
def _turn(a: int, b: int) -> int:
    """|a - b| between two angles in units of 2 pi / 65536, wrapped to 0..32768 (masking
    instead of a modulo: this sits in stage 1's innermost loop)."""
    d = (a - b) & 0xFFFF
    return 65536 - d if d > 32768 else d


@njit(cache=True, inline="always")
def _stage1_finger(f, p_bits, p_theta, p_xy, p_ones, p_count, g_bits, g_theta, g_xy,
                   g_count, g_ones, common, found_a, found_b, found_sim):  # type: ignore[no-untyped-def]
    """Stage-1 score of finger f (see `_stage1`); the other arrays are scratch space.

    The finger's key words are stored word-major (g_bits[f, w, b]), so that the
    popcounts of one probe key against all of a finger's keys run as one vector loop
    (the CPU's vector popcount where it has one); a finger's unused key slots are zero
    and can never pass the similarity floor."""
    if g_count[f] == 0:
        return 0.0
    for b in range(KEYS_PER_FINGER):
        g_ones[b] = 0
    for w in range(CODE_WORDS):
        for b in range(KEYS_PER_FINGER):
            g_ones[b] += mcc._popcount(g_bits[f, w, b])
    k = 0
    for a in range(p_count):
        for b in range(KEYS_PER_FINGER):
            common[b] = 0
        for w in range(CODE_WORDS):
            word = p_bits[a, w]
            for b in range(KEYS_PER_FINGER):
                common[b] += mcc._popcount(word & g_bits[f, w, b])
        best = SIMILARITY_FLOOR
        best_b = -1
        ta = int(p_theta[a])
        for b in range(KEYS_PER_FINGER):
            ones = p_ones[a] + g_ones[b]
            if ones == 0 or 2 * common[b] <= SIMILARITY_FLOOR * ones:
                continue
            if _turn(ta, int(g_theta[f, b])) > 16384:  # directions more than 90 degrees apart
                continue
            sim = 2.0 * common[b] / ones
            if sim > best:
                best = sim
                best_b = b
        if best_b >= 0:
            found_a[k] = a
            found_b[k] = best_b
            found_sim[k] = best - SIMILARITY_FLOOR
            k += 1
    best_total = 0.0
    for i in range(k):
        ai, bi = found_a[i], found_b[i]
        rot_i = int(g_theta[f, bi]) - int(p_theta[ai])
        total = found_sim[i]
        for j in range(k):
            if j == i or found_b[j] == bi:
                continue
            aj, bj = found_a[j], found_b[j]
            rot_j = int(g_theta[f, bj]) - int(p_theta[aj])
            if _turn(rot_i, rot_j) > PAIR_ROTATION:
                continue
            dpx = float(p_xy[ai, 0]) - float(p_xy[aj, 0])
            dpy = float(p_xy[ai, 1]) - float(p_xy[aj, 1])
            dgx = float(g_xy[f, bi, 0]) - float(g_xy[f, bj, 0])
            dgy = float(g_xy[f, bi, 1]) - float(g_xy[f, bj, 1])
            gap = abs(math.sqrt(dpx * dpx + dpy * dpy) - math.sqrt(dgx * dgx + dgy * dgy))
            if gap <= PAIR_DISTANCE:
                total += found_sim[j]
        if total > best_total:
            best_total = total
    return best_total


STAGE1_BLOCK = 2048  # fingers per parallel task: scratch space is allocated per block


@njit(cache=True, parallel=True)
def _stage1(p_bits, p_theta, p_xy, p_count, g_bits, g_theta, g_xy, g_count,
            alive):  # type: ignore[no-untyped-def]
    """Stage-1 score of every finger: the best probe key / finger key pairs (similarity
    above SIMILARITY_FLOOR), and how many of them agree on one rigid placement (pair
    distances within PAIR_DISTANCE, rotations within PAIR_ROTATION of each other)."""
    n = g_bits.shape[0]
    scores = np.zeros(n, dtype=np.float32)
    p_ones = np.zeros(p_count, dtype=np.int64)
    for a in range(p_count):
        for w in range(CODE_WORDS):
            p_ones[a] += mcc._popcount(p_bits[a, w])
    blocks = (n + STAGE1_BLOCK - 1) // STAGE1_BLOCK
    for block in prange(blocks):
        g_ones = np.zeros(KEYS_PER_FINGER, dtype=np.int64)
        common = np.zeros(KEYS_PER_FINGER, dtype=np.int64)
        found_a = np.empty(p_count, dtype=np.int64)
        found_b = np.empty(p_count, dtype=np.int64)
        found_sim = np.empty(p_count, dtype=np.float64)
        for f in range(block * STAGE1_BLOCK, min(n, (block + 1) * STAGE1_BLOCK)):
            if alive[f]:
                scores[f] = _stage1_finger(f, p_bits, p_theta, p_xy, p_ones, p_count,
                                           g_bits, g_theta, g_xy, g_count, g_ones, common,
                                           found_a, found_b, found_sim)
    return scores


@njit(cache=True, inline="always")
def _unpack(pool, start, origin, slot, n):  # type: ignore[no-untyped-def]
    """A finger's stored minutiae as float arrays x, y (y up, pixels), theta (radians)."""
    mask = (1 << COORDINATE_BITS) - 1
    x = np.empty(n)
    y = np.empty(n)
    t = np.empty(n)
    for i in range(n):
        packed = int(pool[start[slot] + i])
        x[i] = float((packed & mask) + origin[slot, 0])
        y[i] = float(((packed >> COORDINATE_BITS) & mask) + origin[slot, 1])
        t[i] = float(packed >> (2 * COORDINATE_BITS)) * MINUTIA_ANGLE_UNIT
    return x, y, t


@njit(cache=True, parallel=True)
def _stage2(px, py, pt, pbits, pvalid, pusable, pool, start, origin, counts, slots):  # type: ignore[no-untyped-def]
    """Full-matcher scores of the probe against the fingers in `slots`, in parallel:
    each finger's cylinders are rebuilt from its stored minutiae."""
    scores = np.zeros(slots.shape[0], dtype=np.float64)
    for c in prange(slots.shape[0]):
        slot = slots[c]
        x, y, t = _unpack(pool, start, origin, slot, counts[slot])
        x, y, t, bits, valid, usable, _ = mcc.in_matching_order(x, y, t, *mcc.cylinders(x, y, t))
        score, _, _ = mcc.compare(px, py, pt, pbits, pvalid, pusable, x, y, t, bits, valid, usable)
        scores[c] = score
    return scores


@njit(cache=True)
def _spread(x, y, order, count, spacing):  # type: ignore[no-untyped-def]
    """Up to `count` minutiae from `order` (central first) that lie at least `spacing`
    apart, topped up from the rest in the same order: keys spread over the centre
    instead of crowding it, so that a probe displaced against the gallery impression
    still finds some of them."""
    n = order.shape[0]
    taken = np.zeros(n, dtype=np.bool_)
    out = np.empty(min(n, count), dtype=np.int64)
    k = 0
    for i in range(n):
        if k == out.shape[0]:
            break
        m = order[i]
        far = True
        for j in range(k):
            if (x[m] - x[out[j]]) ** 2 + (y[m] - y[out[j]]) ** 2 < spacing ** 2:
                far = False
                break
        if far:
            out[k] = m
            taken[i] = True
            k += 1
    for i in range(n):
        if k == out.shape[0]:
            break
        if not taken[i]:
            out[k] = order[i]
            k += 1
    return out


@njit(cache=True, parallel=True)
def _build(xs, ys, ts, recur, offsets, code_bits, code_theta, code_xy, code_count, pool, start,
           origin, minutiae_count):  # type: ignore[no-untyped-def]
    """Index many fingers at once, in parallel; row f of the outputs is finger f
    (minutiae xs[offsets[f]:offsets[f + 1]], and so on; y up, radians), and its stored
    minutiae go to pool[start[f]:], which the caller has sized. Keys are taken among
    the minutiae with `recur` set first."""
    limit = (1 << COORDINATE_BITS) - 1
    for f in prange(offsets.shape[0] - 1):
        lo, hi = offsets[f], offsets[f + 1]
        x, y, t = xs[lo:hi], ys[lo:hi], ts[lo:hi]
        n = hi - lo
        code_count[f] = 0
        minutiae_count[f] = 0
        if n == 0:
            continue
        cx, cy = x.mean(), y.mean()
        distance = (x - cx) ** 2 + (y - cy) ** 2
        order = np.argsort(distance)
        first = np.argsort(distance + np.where(recur[lo:hi], 0.0, NOT_FIRST))
        candidates = _spread(x, y, first, 2 * KEYS_PER_FINGER + 8, KEY_SPACING)
        bits, _, usable = mcc.cylinders_of(x, y, t, candidates)
        chosen = np.flatnonzero(usable)[:KEYS_PER_FINGER]
        pooled = _pool(bits[chosen])
        count = chosen.shape[0]
        for k in range(count):
            m = candidates[chosen[k]]
            code_bits[f, :, k] = pooled[k]
            code_theta[f, k] = round((t[m] % (2 * math.pi)) / ANGLE_UNIT) % 65536
            code_xy[f, k, 0] = round(x[m])
            code_xy[f, k, 1] = round(y[m])
        code_count[f] = count
        # The stored minutiae (kept in their original order), packed against the
        # finger's own origin; the rare minutia more than 4095 px away is clamped.
        kept = np.sort(order[: min(n, MAX_STORED_MINUTIAE)])
        ox = round(x[kept].min())
        oy = round(y[kept].min())
        origin[f, 0] = ox
        origin[f, 1] = oy
        for i in range(kept.shape[0]):
            m = kept[i]
            px = min(limit, max(0, round(x[m]) - ox))
            py = min(limit, max(0, round(y[m]) - oy))
            angle = round((t[m] % (2 * math.pi)) / MINUTIA_ANGLE_UNIT) % 256
            pool[start[f] + i] = np.uint32(px | (py << COORDINATE_BITS)
                                           | (angle << (2 * COORDINATE_BITS)))
        minutiae_count[f] = kept.shape[0]


def recurring(x: np.ndarray, y: np.ndarray, theta: np.ndarray,
              others: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Which of an impression's minutiae (x, y in pixels, theta in radians, in one
    convention for all) recur in every other extraction of it (`others`, e.g. the other
    grid phases): a minutia within RECUR_DISTANCE and RECUR_TURN. With no other
    extraction, every one does.

    On FVC2004 B, 66 % of MINDTCT's minutiae recur in all three other phases and 10 %
    in none."""
    x, y, theta = (np.asarray(a, dtype=np.float64) for a in (x, y, theta))
    found = np.ones(x.shape[0], dtype=np.bool_)
    for ox, oy, ot in others:
        ox, oy, ot = (np.asarray(a, dtype=np.float64) for a in (ox, oy, ot))
        near = ((x[:, None] - ox[None, :]) ** 2 + (y[:, None] - oy[None, :]) ** 2
                <= RECUR_DISTANCE ** 2)
        turn = np.abs((theta[:, None] - ot[None, :] + math.pi) % (2 * math.pi) - math.pi)
        found &= (near & (turn <= RECUR_TURN)).any(axis=1)
    return found


def recurring_in(phases: Sequence[matching.MatchTemplate]) -> np.ndarray:
    """`recurring` for view 0 of prepared phases (its rows, in matching order)."""
    first, *others = phases
    return recurring(first.x, first.y, first.theta, [(t.x, t.y, t.theta) for t in others])


def _view0(probe: Probe) -> tuple[matching.MatchTemplate, np.ndarray]:
    """View 0 of a probe or finger, and which of its minutiae recur in its phases."""
    if isinstance(probe, matching.MatchTemplate):
        return probe, np.ones(probe.size, dtype=np.bool_)
    if not probe:
        raise ValueError("template: no view given")
    return probe[0], recurring_in(probe)


def _central_order(x: np.ndarray, y: np.ndarray, recur: np.ndarray) -> np.ndarray:
    """Minutia indices, recurring ones first, each group nearest the centroid of all
    minutiae first."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    distance = (x - x.mean()) ** 2 + (y - y.mean()) ** 2
    return np.argsort(distance + np.where(recur, 0.0, NOT_FIRST), kind="stable")


def _key_codes(x: np.ndarray, y: np.ndarray, theta: np.ndarray, count: int,
               recur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled cylinders of the `count` most central minutiae (recurring ones first) whose
    cylinders are usable, with their directions (angle units) and positions."""
    order = _spread(x, y, _central_order(x, y, recur), 2 * count + 8, PROBE_KEY_SPACING)
    bits, _, usable = mcc.cylinders_of(x, y, theta, order)
    chosen = np.flatnonzero(usable)[:count]
    angles = np.round((theta[order[chosen]] % (2 * math.pi)) / ANGLE_UNIT).astype(np.int64)
    positions = np.stack([x[order[chosen]], y[order[chosen]]], axis=1)
    return _pool(bits[chosen]), angles % 65536, np.round(positions).astype(np.int16)


@dataclass(frozen=True)
class ProbeKeys:
    template: matching.MatchTemplate
    bits: np.ndarray
    theta: np.ndarray
    xy: np.ndarray


def probe_keys(probe: Probe) -> ProbeKeys:
    """A probe's key cylinders: of view 0, preferring minutiae recurring in its phases."""
    template, recur = _view0(probe)
    bits, theta, xy = _key_codes(template.x, template.y, template.theta, PROBE_KEYS, recur)
    return ProbeKeys(template, bits, theta, xy)


@dataclass
class IndexShard:
    """A shard of the index: plain arrays, grown by doubling. `keys` are the caller's
    finger identifiers (e.g. database row ids)."""

    capacity: int = 1024
    size: int = 0
    keys: np.ndarray = field(init=False)
    alive: np.ndarray = field(init=False)
    code_bits: np.ndarray = field(init=False)
    code_theta: np.ndarray = field(init=False)
    code_xy: np.ndarray = field(init=False)  # key positions, y up (pixels)
    code_count: np.ndarray = field(init=False)
    origin: np.ndarray = field(init=False)  # each finger's minutiae origin, y up (pixels)
    minutiae_start: np.ndarray = field(init=False)  # each finger's run in `pool`
    minutiae_count: np.ndarray = field(init=False)
    pool: np.ndarray = field(init=False)  # packed minutiae: see the module's docstring
    pool_size: int = field(init=False, default=0)
    pool_garbage: int = field(init=False, default=0)  # minutiae of removed fingers
    slots: dict[int, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = np.zeros(64 * max(1, self.capacity), dtype=np.uint32)
        self._allocate(max(1, self.capacity))

    def _allocate(self, capacity: int) -> None:
        old = None if not hasattr(self, "keys") else self._arrays()
        self.capacity = capacity
        self.keys = np.zeros(capacity, dtype=np.int64)
        self.alive = np.zeros(capacity, dtype=np.bool_)
        self.code_bits = np.zeros((capacity, CODE_WORDS, KEYS_PER_FINGER), dtype=np.uint64)
        self.code_theta = np.zeros((capacity, KEYS_PER_FINGER), dtype=np.uint16)
        self.code_xy = np.zeros((capacity, KEYS_PER_FINGER, 2), dtype=np.int16)
        self.code_count = np.zeros(capacity, dtype=np.uint8)
        self.origin = np.zeros((capacity, 2), dtype=np.int16)
        self.minutiae_start = np.zeros(capacity, dtype=np.uint32)
        self.minutiae_count = np.zeros(capacity, dtype=np.uint8)
        if old is not None:
            for name, array in old.items():
                getattr(self, name)[: self.size] = array[: self.size]

    def _arrays(self) -> dict[str, np.ndarray]:
        """The per-finger arrays (row i is slot i)."""
        return {name: getattr(self, name) for name in (
            "keys", "alive", "code_bits", "code_theta", "code_xy", "code_count", "origin",
            "minutiae_start", "minutiae_count")}

    @property
    def bytes_per_finger(self) -> float:
        """The index's memory per finger held: its fixed row and 4 bytes for each of the
        minutiae it keeps (spare capacity and not yet reclaimed pool space left out)."""
        per_slot = sum(a[0].nbytes for a in self._arrays().values())
        alive = self.alive[: self.size]
        minutiae = float(self.minutiae_count[: self.size][alive].mean()) if alive.any() else 0.0
        return per_slot + self.pool.itemsize * minutiae

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, key: int, template: Probe) -> None:
        """Index one finger (replacing any finger with the same key): one prepared view,
        or its phases (view 0 is indexed, its keys chosen among recurring minutiae)."""
        view, recur = _view0(template)
        self.add_minutiae(key, view.x, view.y, view.theta, recur)

    def add_minutiae(self, key: int, x: np.ndarray, y: np.ndarray, theta: np.ndarray,
                     recur: np.ndarray | None = None) -> None:
        """`add` from bare minutiae (y up, radians): only the key cylinders are built."""
        self.remove(key)
        self.add_many(np.array([key]), x, y, theta, np.array([0, len(x)]), recur)

    def add_many(self, keys: np.ndarray, x: np.ndarray, y: np.ndarray, theta: np.ndarray,
                 offsets: np.ndarray, recur: np.ndarray | None = None) -> None:
        """Index many new fingers at once, built in parallel: finger i has the minutiae
        offsets[i]:offsets[i + 1] of x, y, theta (y up, radians); `recur` marks the
        minutiae that recur in the fingers' other grid phases (`recurring`; None: all,
        for fingers known by one extraction), among which keys are taken first."""
        keys = np.asarray(keys, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        if len(offsets) != len(keys) + 1 or (np.diff(offsets) < 0).any():
            raise ValueError("offsets: one more than keys, non-decreasing, is needed")
        if any(int(k) in self.slots for k in keys) or len(set(keys.tolist())) != len(keys):
            raise ValueError("keys: add_many takes new, distinct keys only")
        recur = (np.ones(len(x), dtype=np.bool_) if recur is None
                 else np.asarray(recur, dtype=np.bool_))
        if recur.shape != (len(x),):
            raise ValueError("recur: one flag per minutia is needed")
        while self.size + len(keys) > self.capacity:
            self._allocate(self.capacity * 2)
        stored = np.minimum(np.diff(offsets), MAX_STORED_MINUTIAE)
        starts = self.pool_size + np.concatenate([[0], np.cumsum(stored)[:-1]])
        needed = self.pool_size + int(stored.sum())
        if needed > self.pool.shape[0]:
            grown = np.zeros(max(needed, 2 * self.pool.shape[0]), dtype=np.uint32)
            grown[: self.pool_size] = self.pool[: self.pool_size]
            self.pool = grown
        lo, hi = self.size, self.size + len(keys)
        self.minutiae_start[lo:hi] = starts
        _build(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
               np.asarray(theta, dtype=np.float64), recur, offsets,
               self.code_bits[lo:hi], self.code_theta[lo:hi], self.code_xy[lo:hi],
               self.code_count[lo:hi], self.pool, self.minutiae_start[lo:hi],
               self.origin[lo:hi], self.minutiae_count[lo:hi])
        self.pool_size = needed
        self.keys[lo:hi] = keys
        self.alive[lo:hi] = True
        for offset, key in enumerate(keys.tolist()):
            self.slots[key] = lo + offset
        self.size = hi

    def _compact(self) -> None:
        """Drop removed fingers' minutiae from the pool (their rows stay, dead)."""
        alive = np.flatnonzero(self.alive[: self.size])
        counts = self.minutiae_count[alive].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        pool = np.zeros(max(64, 2 * int(counts.sum())), dtype=np.uint32)
        for slot, start, count in zip(alive, starts, counts, strict=True):
            old = int(self.minutiae_start[slot])
            pool[start: start + count] = self.pool[old: old + count]
        self.minutiae_start[alive] = starts
        self.pool, self.pool_size, self.pool_garbage = pool, int(counts.sum()), 0

    def remove(self, key: int) -> bool:
        slot = self.slots.pop(key, None)
        if slot is None:
            return False
        self.alive[slot] = False
        self.pool_garbage += int(self.minutiae_count[slot])
        if self.pool_garbage > max(4096, self.pool_size // 2):
            self._compact()
        return True

    def shortlist(self, probe: ProbeKeys, limit: int = SHORTLIST) -> list[tuple[float, int]]:
        """Stage 1: (stage-1 score, slot) of the `limit` most promising fingers."""
        if self.size == 0 or probe.bits.shape[0] == 0:
            return []
        scores = _stage1(probe.bits, probe.theta, probe.xy, probe.bits.shape[0],
                         self.code_bits[: self.size], self.code_theta[: self.size],
                         self.code_xy[: self.size], self.code_count[: self.size],
                         self.alive[: self.size])
        limit = min(limit, self.size)
        top = np.argpartition(-scores, limit - 1)[:limit]
        return [(float(scores[s]), int(s)) for s in top if self.alive[s]]


@dataclass(frozen=True)
class Candidate:
    key: int
    score: float  # the full matcher's raw score
    fmr: float


def search_shards(shards: Iterable[IndexShard], probe: Probe,
                  limit: int = 10, shortlist: int = SHORTLIST,
                  calibration: matching.Calibration | None = None) -> list[Candidate]:
    """Ranked candidates for a probe impression (one view, or its phases) across
    shards, best first. Stage 2 and the scores are view 0's, their FMR read from
    `calibration` (a single-view table; default: the shipped one)."""
    keys = probe_keys(probe)
    view = keys.template
    scored: list[tuple[float, int]] = []
    for shard in shards:
        slots = np.array([slot for _, slot in shard.shortlist(keys, shortlist)],
                         dtype=np.int64)
        if slots.size == 0:
            continue
        scores = _stage2(view.x, view.y, view.theta, view.bits, view.valid,
                         view.usable, shard.pool, shard.minutiae_start, shard.origin,
                         shard.minutiae_count, slots)
        scored += [(float(score), int(shard.keys[slot]))
                   for score, slot in zip(scores, slots, strict=True)]
    scored.sort(key=lambda item: (-item[0], item[1]))
    table = calibration or matching.calibration()
    return [Candidate(key, score, table.fmr(score)) for score, key in scored[:limit]]
