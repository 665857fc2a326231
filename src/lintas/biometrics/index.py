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
SHORTLIST = 48
POOLED = 8  # spatial cells per side after pooling
CODE_WORDS = mcc.ND  # one 64-bit word per direction: bit (i * 8 + j) is cell (i, j)
MIN_SHARED = 0.6
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
def _stage1(p_bits, p_valid, p_theta, p_count, g_bits, g_valid, g_theta, g_count,
            alive):  # type: ignore[no-untyped-def]
    n = g_bits.shape[0]
    scores = np.zeros(n, dtype=np.float32)
    min_cells = MIN_SHARED * POOLED * POOLED * 0.75
    for f in prange(n):
        if not alive[f]:
            continue
        total = 0.0
        for a in range(p_count):
            best = 0.0
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
            total += best
        scores[f] = total
    return scores


def _central_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minutia indices, nearest the centroid of all minutiae first."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    distance = (x - x.mean()) ** 2 + (y - y.mean()) ** 2
    return np.argsort(distance, kind="stable")


def _key_codes(x: np.ndarray, y: np.ndarray, theta: np.ndarray,
               count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled cylinders of the `count` most central minutiae whose cylinders are usable."""
    order = _central_order(x, y)[: 2 * count + 8]
    bits, valid, usable = mcc.cylinders_of(x, y, theta, order)
    chosen = np.flatnonzero(usable)[:count]
    pooled_bits, pooled_valid = _pool(bits[chosen], valid[chosen])
    angles = np.round((theta[order[chosen]] % (2 * math.pi)) / ANGLE_UNIT).astype(np.int64)
    return pooled_bits, pooled_valid, angles % 65536


@dataclass(frozen=True)
class ProbeKeys:
    template: matching.MatchTemplate
    bits: np.ndarray
    valid: np.ndarray
    theta: np.ndarray


def probe_keys(template: matching.MatchTemplate) -> ProbeKeys:
    bits, valid, theta = _key_codes(template.x, template.y, template.theta, PROBE_KEYS)
    return ProbeKeys(template, bits, valid, theta)


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
        self.code_count = np.zeros(capacity, dtype=np.uint8)
        self.minutiae = np.zeros((capacity, STORED_MINUTIAE, 3), dtype=np.uint16)
        self.minutiae_count = np.zeros(capacity, dtype=np.uint8)
        if old is not None:
            for name, array in old.items():
                getattr(self, name)[: self.size] = array[: self.size]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in (
            "keys", "alive", "code_bits", "code_valid", "code_theta", "code_count",
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
        bits, valid, angles = _key_codes(x, y, theta, KEYS_PER_FINGER)
        count = bits.shape[0]
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

    def remove(self, key: int) -> bool:
        slot = self.slots.pop(key, None)
        if slot is None:
            return False
        self.alive[slot] = False
        return True

    def stored_template(self, slot: int) -> matching.MatchTemplate:
        """The finger as stage 2 compares it, rebuilt from the stored minutiae."""
        n = int(self.minutiae_count[slot])
        raw = self.minutiae[slot, :n].astype(np.float64)
        x, y = raw[:, 0] - 16384, raw[:, 1] - 32768
        theta = raw[:, 2] * ANGLE_UNIT
        bits, valid, usable = mcc.cylinders(x, y, theta)
        return matching.MatchTemplate(x, y, theta, bits, valid, usable)

    def shortlist(self, probe: ProbeKeys, limit: int = SHORTLIST) -> list[tuple[float, int]]:
        """Stage 1: (stage-1 score, slot) of the `limit` most promising fingers."""
        if self.size == 0 or probe.bits.shape[0] == 0:
            return []
        scores = _stage1(probe.bits, probe.valid, probe.theta, probe.bits.shape[0],
                         self.code_bits[: self.size], self.code_valid[: self.size],
                         self.code_theta[: self.size], self.code_count[: self.size],
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
        for _, slot in shard.shortlist(keys, shortlist):
            score = matching.compare(probe, shard.stored_template(slot))
            scored.append((score, int(shard.keys[slot])))
    scored.sort(key=lambda item: (-item[0], item[1]))
    calibration = matching.calibration()
    return [Candidate(key, score, calibration.fmr(score)) for score, key in scored[:limit]]
