"""Accuracy measures of a verification system, as FVC defines them.

Scores are similarities: a comparison is accepted when its score is at or above the
threshold t. FMR(t) is the share of impostor scores >= t; FNMR(t) the share of genuine
scores < t.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def _check(genuine: ArrayLike, impostor: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    g, i = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    if g.size == 0 or i.size == 0:
        raise ValueError("both genuine and impostor scores are needed")
    if not (np.isfinite(g).all() and np.isfinite(i).all()):
        raise ValueError("scores must be finite numbers")
    return g, i


def eer(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """The equal error rate by FVC's definition (Maio et al., FVC2000 report, 2002).

    t1 is the largest threshold with FNMR <= FMR and t2 the smallest with FNMR >= FMR;
    the EER interval [EERlow, EERhigh] is taken at whichever of the two has the smaller
    FNMR + FMR, and the EER is its midpoint.
    """
    g, i = _check(genuine, impostor)
    values = np.unique(np.concatenate([g, i]))
    thresholds = np.concatenate([[values[0] - 1.0], values, [np.nextafter(values[-1], math.inf)]])
    # Compared as exact integers (FNMR <= FMR as misses * impostors <= false matches *
    # genuines), so a tie is a tie and not a rounding accident.
    misses = np.searchsorted(np.sort(g), thresholds, side="left")
    false_matches = i.size - np.searchsorted(np.sort(i), thresholds, side="left")
    left, right = misses * i.size, false_matches * g.size
    t1 = np.flatnonzero(left <= right).max()
    t2 = np.flatnonzero(left >= right).min()
    fnmr, fmr = misses / g.size, false_matches / i.size
    if left[t1] + right[t1] <= left[t2] + right[t2]:
        low, high = fnmr[t1], fmr[t1]
    else:
        low, high = fmr[t2], fnmr[t2]
    return float((low + high) / 2)


def threshold_at_fmr(impostor: ArrayLike, fmr: float) -> float:
    """The smallest threshold whose FMR on these impostor scores is at most `fmr`."""
    if not 0 <= fmr < 1:
        raise ValueError(f"fmr: {fmr} is not in [0, 1)")
    i = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if i.size == 0:
        raise ValueError("impostor scores are needed")
    allowed = math.floor(fmr * i.size + 1e-9)
    if allowed >= i.size:
        return float(i[-1])
    return float(np.nextafter(i[allowed], math.inf))


def fnmr_at_fmr(genuine: ArrayLike, impostor: ArrayLike, fmr: float) -> float:
    """FNMR at the smallest threshold that keeps FMR at or below `fmr`."""
    g, i = _check(genuine, impostor)
    threshold = threshold_at_fmr(i, fmr)
    return float(np.mean(g < threshold))


def fmr_table(impostor: ArrayLike, thresholds: ArrayLike) -> list[float]:
    """FMR measured at each threshold."""
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    t = np.asarray(thresholds, dtype=np.float64)
    return [float(v) for v in 1.0 - np.searchsorted(i, t, side="left") / i.size]


def pareto_tail(impostor: ArrayLike, k: int, z: float = 2.0) -> tuple[float, float, float]:
    """The upper tail of the impostor scores as a power law, FMR(s) ~ s ** -alpha above
    the (k+1)-th highest score: (that score, Hill's estimate of alpha, its lower bound).

    Hill's estimator (Hill, 1975) is the inverse mean log-excess of the k highest scores
    over the (k+1)-th; its standard error is about alpha / sqrt(k), so the bound is
    alpha * (1 - z / sqrt(k)). A smaller alpha is a heavier tail: extrapolated with the
    bound, rates are overstated rather than understated (a false match claimed rarer than
    it is would be the dangerous error)."""
    s = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if not 1 <= k < s.size:
        raise ValueError(f"k: {k} is not in 1..{s.size - 1} (impostor scores: {s.size})")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    start = float(s[k])
    if start <= 0:
        raise ValueError(f"the {k + 1}-th highest impostor score is {start}: a power-law "
                         "tail needs positive scores")
    excess = float(np.mean(np.log(s[:k] / start)))
    if excess <= 0:
        raise ValueError(f"the {k} highest impostor scores are all equal: no tail to fit")
    alpha = 1.0 / excess
    return start, alpha, alpha * max(0.0, 1.0 - z / math.sqrt(k))
