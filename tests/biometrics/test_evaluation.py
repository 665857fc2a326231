"""FVC's accuracy measures, checked against figures worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lintas.biometrics import evaluation


def test_eer_of_separable_scores_is_zero() -> None:
    assert evaluation.eer([0.8, 0.9, 0.95], [0.1, 0.2, 0.3]) == 0.0


def test_eer_of_identical_distributions_is_one_half() -> None:
    # Any threshold makes FMR + FNMR = 1 on the same scores; the midpoint is 0.5.
    assert evaluation.eer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]) == 0.5


def test_eer_uses_fvc_interval_midpoint() -> None:
    # genuine 0.2 0.6 0.7 0.8; impostor 0.1 0.3 0.5 0.65.
    # t = 0.6: FNMR 1/4, FMR 1/4 (0.65 >= 0.6): an exact crossing, EER 0.25.
    assert evaluation.eer([0.2, 0.6, 0.7, 0.8], [0.1, 0.3, 0.5, 0.65]) == 0.25
    # genuine 0.3 0.6 0.9 0.95; impostor 0.2 0.5 0.7. No exact crossing:
    # t1 = 0.6 (largest with FNMR <= FMR): FNMR 1/4, FMR 1/3, sum 7/12 -- the smaller;
    # t2 = 0.7 (smallest with FNMR >= FMR): FNMR 1/2, FMR 1/3, sum 5/6.
    # So [EERlow, EERhigh] = [1/4, 1/3] and the EER is their midpoint, 7/24.
    assert evaluation.eer([0.3, 0.6, 0.9, 0.95], [0.2, 0.5, 0.7]) == pytest.approx(7 / 24)
    # Where the sum is smaller at t2, the interval is taken there: genuine 0.3 0.8 0.9,
    # impostor 0.5 0.6 0.7 -> t1 = 0.7 (FNMR 1/3, FMR 1/3): an exact crossing, 1/3.
    assert evaluation.eer([0.3, 0.8, 0.9], [0.5, 0.6, 0.7]) == pytest.approx(1 / 3)


def test_fnmr_at_fmr_counts_ties_as_matches() -> None:
    impostor = [i / 1000 for i in range(1000)]  # 0.000 .. 0.999
    genuine = [0.5, 0.9985, 0.999, 1.0]
    # FMR 0.1 %: one impostor (0.999) may pass, so the threshold sits just above 0.998.
    assert evaluation.threshold_at_fmr(impostor, 0.001) == pytest.approx(0.998, abs=1e-9)
    assert evaluation.threshold_at_fmr(impostor, 0.001) > 0.998
    assert evaluation.fnmr_at_fmr(genuine, impostor, 0.001) == 0.25
    # FMR 0: the threshold sits above the best impostor (0.999), so a genuine score
    # tied with it is a non-match.
    assert evaluation.fnmr_at_fmr(genuine, impostor, 0.0) == 0.75


def test_fmr_table() -> None:
    assert evaluation.fmr_table([0.1, 0.2, 0.3, 0.4], [0.0, 0.2, 0.35, 0.5]) == \
        [1.0, 0.75, 0.25, 0.0]


@pytest.mark.parametrize("genuine, impostor", [([], [0.1]), ([0.1], []),
                                               ([float("nan")], [0.1])])
def test_refuses_unusable_scores(genuine: list[float], impostor: list[float]) -> None:
    with pytest.raises(ValueError):
        evaluation.eer(genuine, impostor)


def test_refuses_fmr_out_of_range() -> None:
    with pytest.raises(ValueError, match="fmr"):
        evaluation.threshold_at_fmr([0.1], 1.5)


def test_pareto_tail_recovers_the_exponent_of_a_power_law() -> None:
    # Scores whose upper tail is exactly FMR(s) = s ** -3 (a Pareto law from 1 up),
    # among as many scores below 1 that the fit must ignore.
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.pareto(3.0, 20_000) + 1.0, rng.uniform(0, 1, 20_000)])
    start, alpha, low = evaluation.pareto_tail(scores, 2_000)
    assert start > 1.0
    assert alpha == pytest.approx(3.0, rel=0.08)
    assert low == pytest.approx(alpha * (1 - 2 / math.sqrt(2_000)))
    assert low < alpha


def test_pareto_tail_refuses_what_it_cannot_fit() -> None:
    with pytest.raises(ValueError, match=r"k: 5 is not in 1\.\.4"):
        evaluation.pareto_tail([1.0, 2.0, 3.0, 4.0, 5.0], 5)
    with pytest.raises(ValueError, match="positive scores"):
        evaluation.pareto_tail([0.0, 0.0, 0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match="all equal"):
        evaluation.pareto_tail([0.5, 1.0, 1.0, 1.0], 2)
    with pytest.raises(ValueError, match="finite"):
        evaluation.pareto_tail([0.5, 1.0, math.inf, 1.0], 2)
