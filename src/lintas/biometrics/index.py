"""1:N search: a compact in-memory index that prunes, and the full matcher that ranks.

Why our own: no maintained Python package indexes minutiae templates. The design follows
the idea of MCC indexing (Cappelli, Ferrara, Maltoni, "Fingerprint indexing based on
Minutia Cylinder-Code", IEEE TPAMI 33(5), 2011), simplified to fit under 1 KiB per finger:

- **Stage 1 (pruning).** Each finger keeps KEYS_PER_FINGER "key" cylinders: those of the
  minutiae nearest the centre of its minutiae (the area every impression captures),
  pooled from 16 x 16 x 6 to 8 x 8 x 6 cells (48 bytes, plus 8 bytes of cell validity).
  A probe's PROBE_KEYS key cylinders are compared with every finger's key cylinders; a
  finger's stage-1 score is the sum, over the probe keys, of the best similarity found.
  This is a linear scan compiled with numba and run in parallel over the shard.
- **Stage 2 (ranking).** The SHORTLIST best fingers of stage 1 are compared with the full
  matcher (`lintas.biometrics.matching.compare`), their cylinders rebuilt from the
  STORED_MINUTIAE minutiae the shard keeps of each finger (nearest the centre first).

A shard is a plain object of numpy arrays (`IndexShard`): it can be pickled and sent to
another process or machine (e.g. a `ray` actor) as is; `search_shards` merges the
shortlists of several shards. It is built from persisted templates at start-up and
updated with `add` and `remove` on enrol and delete.

Memory per finger: KEYS_PER_FINGER x (48 + 8 + 2) bytes of codes, STORED_MINUTIAE x 6
bytes of minutiae, 8 bytes of key and a few bytes of bookkeeping: 947 bytes, shown by
`IndexShard.bytes_per_finger`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from lintas.biometrics import matching, mcc

KEYS_PER_FINGER = 12
PROBE_KEYS = 32
STORED_MINUTIAE = 40
SHORTLIST = 128
POOLED = 8  # spatial cells per side after pooling
CODE_WORDS = mcc.ND  # one 64-bit word per direction: bit (i * 8 + j) is cell (i, j)
MIN_SHARED = 0.6
SIMILARITY_FLOOR = 0.5  # key pairs less similar than this do not count in stage 1
PAIR_DISTANCE = 15.0  # px: two key pairs agree when their distances differ by at most this
PAIR_ROTATION = 65536 // 12  # and their rotations by at most 30 degrees (angle units)
ANGLE_UNIT = 2 * math.pi / 65536


@njit(cache=True)
def _pool(bits, valid):  # type: ignore[no-untyped-def]
    """16 x 16 x ND cylinders to 8 x 8 x ND: a pooled bit is set when any of its four
    cells is; a pooled cell is valid when all four are."""
    n = bits.shape[0]
    out_bits = np.zeros((n, CODE_WORDS), dtype=np.uint64)
    out_valid = np.zeros(n, dtype=np.uint64)
    for m in range(n):
        for pi in range(POOLED):
            for pj in range(POOLED):
                all_valid = True
                for di in range(2):
                    for dj in range(2):
                        cell = ((2 * pi + di) * mcc.NS + (2 * pj + dj)) * mcc.ND
                        if not (valid[m, cell >> 6] >> np.uint64(cell & 63)) & np.uint64(1):
                            all_valid = False
                if all_valid:
                    out_valid[m] |= np.uint64(1) << np.uint64(pi * POOLED + pj)
                for k in range(mcc.ND):
                    on = False
                    for di in range(2):
                        for dj in range(2):
                            cell = ((2 * pi + di) * mcc.NS + (2 * pj + dj)) * mcc.ND + k
                            if (bits[m, cell >> 6] >> np.uint64(cell & 63)) & np.uint64(1):
                                on = True
                    if on:  # direction-major: word k holds direction k of all 64 cells
                        out_bits[m, k] |= np.uint64(1) << np.uint64(pi * POOLED + pj)
    return out_bits, out_valid


@njit(cache=True, parallel=True)
def _stage1(p_bits, p_valid, p_theta, p_xy, p_count, g_bits, g_valid, g_theta, g_xy,
            g_count, alive):  # type: ignore[no-untyped-def]
    """Stage-1 score of every finger: the best probe key / finger key pairs (similarity
    above SIMILARITY_FLOOR), and how many of them agree on one rigid placement (pair
    distances within PAIR_DISTANCE, rotations within PAIR_ROTATION of each other)."""
    n = g_bits.shape[0]
    scores = np.zeros(n, dtype=np.float32)
    min_cells = MIN_SHARED * POOLED * POOLED * 0.75
    for f in prange(n):
        if not alive[f]:
            continue
        found_b = np.empty(p_count, dtype=np.int64)
        found_sim = np.empty(p_count, dtype=np.float64)
        found_a = np.empty(p_count, dtype=np.int64)
        k = 0
        for a in range(p_count):
            best = SIMILARITY_FLOOR
            best_b = -1
            for b in range(g_count[f]):
                diff = abs(((int(p_theta[a]) - int(g_theta[f, b]) + 32768) % 65536) - 32768)
                if diff > 16384:  # directions more than 90 degrees apart
                    continue
                mask = p_valid[a] & g_valid[f, b]
                shared = mcc._popcount(mask)
                if shared < min_cells:
                    continue
                ones_a = 0
                ones_b = 0
                differ = 0
                for w in range(CODE_WORDS):
                    xa = p_bits[a, w] & mask
                    xb = g_bits[f, b, w] & mask
                    ones_a += mcc._popcount(xa)
                    ones_b += mcc._popcount(xb)
                    differ += mcc._popcount(xa ^ xb)
                if ones_a + ones_b == 0:
                    continue
                sim = 1.0 - differ / (ones_a + ones_b)
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
                turn = abs(((rot_i - rot_j + 32768) % 65536) - 32768)
                if turn > PAIR_ROTATION:
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
        scores[f] = best_total
    return scores


@njit(cache=True, parallel=True)
def _stage2(px, py, pt, pbits, pvalid, pusable, minutiae, counts, slots):  # type: ignore[no-untyped-def]
    """Full-matcher scores of the probe against the fingers in `slots`, in parallel:
    each finger's cylinders are rebuilt from its stored minutiae."""
    scores = np.zeros(slots.shape[0], dtype=np.float64)
    for c in prange(slots.shape[0]):
        slot = slots[c]
        n = counts[slot]
        x = np.empty(n)
        y = np.empty(n)
        t = np.empty(n)
        for i in range(n):
            x[i] = float(minutiae[slot, i, 0]) - 16384.0
            y[i] = float(minutiae[slot, i, 1]) - 32768.0
            t[i] = float(minutiae[slot, i, 2]) * ANGLE_UNIT
        bits, valid, usable = mcc.cylinders(x, y, t)
        sims = mcc.local_similarities(pbits, pvalid, pusable, pt, bits, valid, usable, t)
        score, _, _ = mcc.consolidate(sims, px, py, pt, x, y, t)
        scores[c] = score
    return scores


@njit(cache=True, parallel=True)
def _build(xs, ys, ts, offsets, n_keys, n_stored, code_bits, code_valid, code_theta, code_xy,
           code_count, minutiae, minutiae_count):  # type: ignore[no-untyped-def]
    """`add_minutiae` for many fingers at once, in parallel; row f of the outputs is
    finger f (minutiae xs[offsets[f]:offsets[f + 1]], and so on)."""
    for f in prange(offsets.shape[0] - 1):
        lo, hi = offsets[f], offsets[f + 1]
        x, y, t = xs[lo:hi], ys[lo:hi], ts[lo:hi]
        n = hi - lo
        if n == 0:
            continue
        cx, cy = x.mean(), y.mean()
        order = np.argsort((x - cx) ** 2 + (y - cy) ** 2)
        candidates = order[: min(n, 2 * n_keys + 8)]
        bits, valid, usable = mcc.cylinders_of(x, y, t, candidates)
        chosen = np.flatnonzero(usable)[:n_keys]
        pooled_bits, pooled_valid = _pool(bits[chosen], valid[chosen])
        count = chosen.shape[0]
        for k in range(count):
            m = candidates[chosen[k]]
            code_bits[f, k] = pooled_bits[k]
            code_valid[f, k] = pooled_valid[k]
            code_theta[f, k] = round((t[m] % (2 * math.pi)) / ANGLE_UNIT) % 65536
            code_xy[f, k, 0] = round(x[m])
            code_xy[f, k, 1] = round(y[m])
        code_count[f] = count
        kept = np.sort(order[: min(n, n_stored)])
        for i in range(kept.shape[0]):
            m = kept[i]
            minutiae[f, i, 0] = min(65535, max(0, round(x[m]) + 16384))
            minutiae[f, i, 1] = min(65535, max(0, round(y[m]) + 32768))
            minutiae[f, i, 2] = round((t[m] % (2 * math.pi)) / ANGLE_UNIT) % 65536
        minutiae_count[f] = kept.shape[0]


def _central_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minutia indices, nearest the centroid of all minutiae first."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    distance = (x - x.mean()) ** 2 + (y - y.mean()) ** 2
    return np.argsort(distance, kind="stable")


def _key_codes(x: np.ndarray, y: np.ndarray, theta: np.ndarray,
               count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooled cylinders of the `count` most central minutiae whose cylinders are usable."""
    order = _central_order(x, y)[: 2 * count + 8]
    bits, valid, usable = mcc.cylinders_of(x, y, theta, order)
    chosen = np.flatnonzero(usable)[:count]
    pooled_bits, pooled_valid = _pool(bits[chosen], valid[chosen])
    angles = np.round((theta[order[chosen]] % (2 * math.pi)) / ANGLE_UNIT).astype(np.int64)
    positions = np.stack([x[order[chosen]], y[order[chosen]]], axis=1)
    return pooled_bits, pooled_valid, angles % 65536, np.round(positions).astype(np.int16)


@dataclass(frozen=True)
class ProbeKeys:
    template: matching.MatchTemplate
    bits: np.ndarray
    valid: np.ndarray
    theta: np.ndarray
    xy: np.ndarray


def probe_keys(template: matching.MatchTemplate) -> ProbeKeys:
    bits, valid, theta, xy = _key_codes(template.x, template.y, template.theta, PROBE_KEYS)
    return ProbeKeys(template, bits, valid, theta, xy)


@dataclass
class IndexShard:
    """A shard of the index: plain arrays, grown by doubling. `keys` are the caller's
    finger identifiers (e.g. database row ids)."""

    capacity: int = 1024
    size: int = 0
    keys: np.ndarray = field(init=False)
    alive: np.ndarray = field(init=False)
    code_bits: np.ndarray = field(init=False)
    code_valid: np.ndarray = field(init=False)
    code_theta: np.ndarray = field(init=False)
    code_xy: np.ndarray = field(init=False)  # key positions, y up (pixels)
    code_count: np.ndarray = field(init=False)
    minutiae: np.ndarray = field(init=False)  # int16 x, int16 y (y up), uint16 angle
    minutiae_count: np.ndarray = field(init=False)
    slots: dict[int, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._allocate(max(1, self.capacity))

    def _allocate(self, capacity: int) -> None:
        old = None if not hasattr(self, "keys") else self._arrays()
        self.capacity = capacity
        self.keys = np.zeros(capacity, dtype=np.int64)
        self.alive = np.zeros(capacity, dtype=np.bool_)
        self.code_bits = np.zeros((capacity, KEYS_PER_FINGER, CODE_WORDS), dtype=np.uint64)
        self.code_valid = np.zeros((capacity, KEYS_PER_FINGER), dtype=np.uint64)
        self.code_theta = np.zeros((capacity, KEYS_PER_FINGER), dtype=np.uint16)
        self.code_xy = np.zeros((capacity, KEYS_PER_FINGER, 2), dtype=np.int16)
        self.code_count = np.zeros(capacity, dtype=np.uint8)
        self.minutiae = np.zeros((capacity, STORED_MINUTIAE, 3), dtype=np.uint16)
        self.minutiae_count = np.zeros(capacity, dtype=np.uint8)
        if old is not None:
            for name, array in old.items():
                getattr(self, name)[: self.size] = array[: self.size]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (
            "keys", "alive", "code_bits", "code_valid", "code_theta", "code_xy", "code_count",
            "minutiae", "minutiae_count")}

    @property
    def bytes_per_finger(self) -> float:
        per_slot = sum(a[0].nbytes for a in self._arrays().values())
        return float(per_slot)

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, key: int, template: matching.MatchTemplate) -> None:
        """Index one finger (replacing any finger with the same key)."""
        self.add_minutiae(key, template.x, template.y, template.theta)

    def add_minutiae(self, key: int, x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> None:
        """`add` from bare minutiae (y up, radians): only the key cylinders are built."""
        if key in self.slots:
            self.remove(key)
        if self.size == self.capacity:
            self._allocate(self.capacity * 2)
        slot = self.size
        self.size += 1
        bits, valid, angles, xy = _key_codes(x, y, theta, KEYS_PER_FINGER)
        count = bits.shape[0]
        self.code_xy[slot, :count] = xy
        self.code_bits[slot, :count] = bits
        self.code_valid[slot, :count] = valid
        self.code_theta[slot, :count] = angles
        self.code_count[slot] = count
        kept = np.sort(_central_order(x, y)[:STORED_MINUTIAE])
        self.minutiae[slot, : len(kept), 0] = np.clip(np.round(x[kept]) + 16384, 0, 65535)
        self.minutiae[slot, : len(kept), 1] = np.clip(np.round(y[kept]) + 32768, 0, 65535)
        self.minutiae[slot, : len(kept), 2] = np.round(
            (theta[kept] % (2 * math.pi)) / ANGLE_UNIT).astype(np.int64) % 65536
        self.minutiae_count[slot] = len(kept)
        self.keys[slot] = key
        self.alive[slot] = True
        self.slots[key] = slot

    def add_many(self, keys: np.ndarray, x: np.ndarray, y: np.ndarray, theta: np.ndarray,
                 offsets: np.ndarray) -> None:
        """`add_minutiae` for many new fingers at once, built in parallel: finger i has
        the minutiae offsets[i]:offsets[i + 1] of x, y, theta (y up, radians)."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(offsets) != len(keys) + 1:
            raise ValueError("offsets: one more than keys is needed")
        if any(int(k) in self.slots for k in keys) or len(set(keys.tolist())) != len(keys):
            raise ValueError("keys: add_many takes new, distinct keys only")
        while self.size + len(keys) > self.capacity:
            self._allocate(self.capacity * 2)
        lo, hi = self.size, self.size + len(keys)
        _build(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
               np.asarray(theta, dtype=np.float64), np.asarray(offsets, dtype=np.int64),
               KEYS_PER_FINGER, STORED_MINUTIAE, self.code_bits[lo:hi], self.code_valid[lo:hi],
               self.code_theta[lo:hi], self.code_xy[lo:hi], self.code_count[lo:hi],
               self.minutiae[lo:hi], self.minutiae_count[lo:hi])
        self.keys[lo:hi] = keys
        self.alive[lo:hi] = True
        for offset, key in enumerate(keys.tolist()):
            self.slots[key] = lo + offset
        self.size = hi

    def remove(self, key: int) -> bool:
        slot = self.slots.pop(key, None)
        if slot is None:
            return False
        self.alive[slot] = False
        return True

    def shortlist(self, probe: ProbeKeys, limit: int = SHORTLIST) -> list[tuple[float, int]]:
        """Stage 1: (stage-1 score, slot) of the `limit` most promising fingers."""
        if self.size == 0 or probe.bits.shape[0] == 0:
            return []
        scores = _stage1(probe.bits, probe.valid, probe.theta, probe.xy, probe.bits.shape[0],
                         self.code_bits[: self.size], self.code_valid[: self.size],
                         self.code_theta[: self.size], self.code_xy[: self.size],
                         self.code_count[: self.size],
                         self.alive[: self.size])
        limit = min(limit, self.size)
        top = np.argpartition(-scores, limit - 1)[:limit]
        return [(float(scores[s]), int(s)) for s in top if self.alive[s]]


@dataclass(frozen=True)
class Candidate:
    key: int
    score: float  # the full matcher's raw score
    fmr: float


def search_shards(shards: Iterable[IndexShard], probe: matching.MatchTemplate,
                  limit: int = 10, shortlist: int = SHORTLIST) -> list[Candidate]:
    """Ranked candidates for a probe impression across shards, best first."""
    keys = probe_keys(probe)
    scored: list[tuple[float, int]] = []
    for shard in shards:
        slots = np.array([slot for _, slot in shard.shortlist(keys, shortlist)],
                         dtype=np.int64)
        if slots.size == 0:
            continue
        scores = _stage2(probe.x, probe.y, probe.theta, probe.bits, probe.valid,
                         probe.usable, shard.minutiae, shard.minutiae_count, slots)
        scored += [(float(score), int(shard.keys[slot]))
                   for score, slot in zip(scores, slots, strict=True)]
    scored.sort(key=lambda item: (-item[0], item[1]))
    calibration = matching.calibration()
    return [Candidate(key, score, calibration.fmr(score)) for score, key in scored[:limit]]
