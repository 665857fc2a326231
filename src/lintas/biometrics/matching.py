"""1:1 fingerprint comparison with scores calibrated to a false match rate.

    prepare(view)                     -> MatchTemplate   (once per impression, ~1 ms)
    prepare_phases(views)             -> Phases (a tuple of MatchTemplate, one a grid phase)
    compare(probe, reference)         -> float           (raw similarity in [0, 1])
    compare_phases(probe, reference)  -> float           (their mean over the phases)
    explain(probe, reference)         -> Comparison      (score, FMR, paired minutiae)
    compare_fingers(probe, reference) -> FusedComparison (several fingers, fused)

The comparison is Minutia Cylinder-Code with LSS-R consolidation (`lintas.biometrics.mcc`,
compiled with numba). Raw scores are turned into false match rates by the calibration
table in `calibration.json`, measured on real impostor comparisons (FVC2004 B sets, all
impostors protocol: `benchmarks/fingerprint.py --sizes 0 --calibration-out FILE` writes
it, and docs/biometrics.md shows it). Several fingers are fused by adding their evidence,
-log10(FMR), which assumes that impostor scores of different fingers are independent.

*Phases.* An impression extracted at the four grid phases of
`lintas.biometrics.extraction.PHASE_SHIFTS` (views 0..3) is compared phase by phase and
the four raw scores averaged (`Phases` packs its views once, so that the four comparisons
run in one call of the compiled core); that score has its own table, `calibration-phases.json`
(`--phase-calibration-out`). Where either side holds one view only (a template from
another system), the comparison falls back to view 0 and the single-extraction table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from typing import Any

import numpy as np

from lintas.biometrics import evaluation, mcc
from lintas.biometrics.minutiae import FingerView


class MatchError(ValueError):
    """A template or request the matcher cannot use."""


@dataclass(frozen=True, eq=False)
class MatchTemplate:
    """One impression, ready for comparison: y-up coordinates, radians, cylinders.

    The minutiae are in the order the comparison runs fastest in (`mcc.matching_order`);
    `index[i]` is the position of row i among the minutiae given to `prepare`."""

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    bits: np.ndarray
    valid: np.ndarray
    usable: np.ndarray
    index: np.ndarray
    position: int = 0
    geo: np.ndarray = field(init=False, repr=False)  # mcc.pack: read by every comparison
    info: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        geo, info = mcc.pack(self.x, self.y, self.theta, self.bits, self.valid, self.usable)
        object.__setattr__(self, "geo", geo)
        object.__setattr__(self, "info", info)

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


PHASES = 4  # extraction.PHASE_SHIFTS: the views of a fully phased impression


def prepare(view: FingerView) -> MatchTemplate:
    """Build the cylinders of every minutia of one impression."""
    minutiae = view.minutiae
    x = np.array([m.x for m in minutiae], dtype=np.float64)
    y = -np.array([m.y for m in minutiae], dtype=np.float64)  # y up, as angles are CCW
    theta = np.radians(np.array([m.angle for m in minutiae], dtype=np.float64))
    x, y, theta, bits, valid, usable, index = mcc.in_matching_order(
        x, y, theta, *mcc.cylinders(x, y, theta))
    return MatchTemplate(x, y, theta, bits, valid, usable, index, view.position)


class Phases(tuple[MatchTemplate, ...]):
    """The prepared views of one impression, view 0 first (a tuple); the first PHASES of
    them packed once into the arrays `compare_phases` hands the compiled core in one
    call."""

    @cached_property
    def packed(self) -> tuple[np.ndarray, ...]:
        views = self[:PHASES]
        offsets = np.cumsum([0, *(view.size for view in views)]).astype(np.int64)
        return (np.concatenate([view.geo.ravel() for view in views]),
                np.concatenate([view.bits for view in views]),
                np.concatenate([view.valid for view in views]),
                np.concatenate([view.info.ravel() for view in views]), offsets)


def prepare_phases(views: Sequence[FingerView]) -> Phases:
    """`prepare` for each view of an impression (as `extract_phases` returns them)."""
    if not views:
        raise MatchError("views: at least one view of the impression is needed")
    return Phases(prepare(view) for view in views)


Template = MatchTemplate | Sequence[MatchTemplate]  # one view, or the phases of one


def _phases(template: Template) -> Sequence[MatchTemplate]:
    if isinstance(template, MatchTemplate):
        return (template,)
    if not template:
        raise MatchError("template: no view to compare")
    return template


def phased(probe: Template, reference: Template) -> bool:
    """Whether both sides hold every phase, so that they compare phase by phase."""
    return len(_phases(probe)) >= PHASES and len(_phases(reference)) >= PHASES


def _compare(a: MatchTemplate, b: MatchTemplate) -> tuple[float, np.ndarray, np.ndarray]:
    return mcc.compare_packed(a.geo, a.bits, a.valid, a.info,  # type: ignore[no-any-return]
                              b.geo, b.bits, b.valid, b.info)


def compare(probe: MatchTemplate, reference: MatchTemplate) -> float:
    """The raw similarity of two impressions, in [0, 1]; see `Calibration` for meaning."""
    return float(mcc.score_packed(probe.geo, probe.bits, probe.valid, probe.info,
                                  reference.geo, reference.bits, reference.valid,
                                  reference.info))


def compare_phases(probe: Template, reference: Template) -> float:
    """The mean raw similarity of the phases both sides hold, phase by phase, in [0, 1];
    view 0 alone (the same as `compare`) where either side has a single view. Its
    meaning comes from `calibration(phased(probe, reference))`."""
    p, r = _phases(probe), _phases(reference)
    if not phased(p, r):
        return compare(p[0], r[0])
    p = p if isinstance(p, Phases) else Phases(p)
    r = r if isinstance(r, Phases) else Phases(r)
    return float(mcc.compare_phased(*p.packed, *r.packed))


@dataclass(frozen=True)
class PairedMinutiae:
    probe_index: int  # index into the probe's minutiae, as given to prepare()
    reference_index: int
    contribution: float  # this pair's share of the raw score


@dataclass(frozen=True)
class Comparison:
    score: float  # raw similarity, 0..1
    fmr: float  # the false match rate of a threshold at this score
    pairs: tuple[PairedMinutiae, ...]  # of view 0 (with phases, its share of view 0's score)
    phases: int = 1  # views compared phase by phase (1: view 0 alone)

    @property
    def evidence(self) -> float:
        """-log10(FMR): 2 at FMR 1 %, 3 at 0.1 %, and so on."""
        return -math.log10(self.fmr)


def explain(probe: Template, reference: Template,
            calibrations: Calibrations | None = None) -> Comparison:
    """The comparison with the minutiae pairs that make its score, for a reviewer to
    draw side by side (indices refer to each impression's minutiae as given to
    `prepare`; with phases, to view 0's). Either side may be one prepared view or the
    phases of an impression (`prepare_phases`); the score is `compare_phases`'s. Its
    FMR comes from `calibrations` (default: the shipped tables, `shipped()`)."""
    tables = calibrations or shipped()
    p, r = _phases(probe), _phases(reference)
    score, pairs, contributions = _compare(p[0], r[0])
    paired = tuple(PairedMinutiae(int(p[0].index[a]), int(r[0].index[b]), float(c))
                   for (a, b), c in zip(pairs, contributions, strict=True))
    if not phased(p, r):
        return Comparison(float(score), tables.single.fmr(float(score)), paired)
    total = 0.0  # summed as compare_phases sums, so that the score is bit for bit its
    for i in range(PHASES):
        total += score if i == 0 else compare(p[i], r[i])
    score = total / PHASES
    return Comparison(float(score), tables.phased.fmr(float(score)), paired,
                      PHASES)


@dataclass(frozen=True)
class Tail:
    """The impostor scores' upper tail as a power law, for rates too rare to count:
    above `score` (where the table reads `fmr`), FMR(s) = fmr * (score / s) ** alpha,
    never below `floor`.

    `alpha` is the lower bound of Hill's estimate on the `fitted` highest impostor scores
    (`evaluation.pareto_tail`): the heavier tail, so an extrapolated rate is overstated
    rather than understated. `floor` is the rarest rate one comparison is ever said to
    have, however high it scores."""

    score: float
    fmr: float
    alpha: float
    fitted: int
    floor: float

    def __post_init__(self) -> None:
        if not (self.score > 0 and 0 < self.floor <= self.fmr <= 1 and self.alpha > 0
                and self.fitted >= 1):
            raise MatchError(f"calibration tail: inconsistent values {self}")


@dataclass(frozen=True)
class Calibration:
    """Thresholds and the false match rate measured at each (on real impostor scores).

    `thresholds` ascend; `fmrs[i]` is the share of impostor comparisons scoring at or
    above `thresholds[i]`. Without a `tail`, the rate below the smallest measurable one
    (1 / impostors) is reported as that floor: nothing rarer was observed, so nothing
    rarer is claimed. With one, scores from `tail.score` up take their rate from the
    fitted tail instead, down to `tail.floor` (docs/biometrics.md, *Rare rates*).
    """

    thresholds: tuple[float, ...]
    fmrs: tuple[float, ...]
    impostors: int
    source: str
    tail: Tail | None = None

    def fmr(self, score: float) -> float:
        tail = self.tail
        if tail is not None and score >= tail.score:
            return max(tail.floor, tail.fmr * (tail.score / score) ** tail.alpha)
        floor = 1.0 / self.impostors
        if score <= self.thresholds[0]:
            return self.fmrs[0]
        value = float(np.interp(score, self.thresholds, self.fmrs))
        return max(floor, value)

    @property
    def rarest(self) -> float:
        """The smallest rate this calibration ever reports."""
        return 1.0 / self.impostors if self.tail is None else self.tail.floor

    def threshold(self, fmr: float) -> float:
        """The threshold for `fmr`: where the impostors resolve it, the smallest tabulated
        threshold whose measured FMR is at most `fmr`; below that, the tail's exact
        inverse."""
        if not 0 < fmr <= 1:
            raise MatchError(f"fmr: {fmr} is not in (0, 1]")
        if fmr < self.rarest:
            raise MatchError(f"fmr: {fmr} is below the rarest rate this calibration "
                             f"reports ({self.rarest:.3g})")
        tail = self.tail
        if tail is not None and fmr < tail.fmr:
            return tail.score * (tail.fmr / fmr) ** (1.0 / tail.alpha)
        for threshold, rate in zip(self.thresholds, self.fmrs, strict=True):
            if rate <= fmr:
                return threshold
        return self.thresholds[-1]


    def as_json(self) -> dict[str, Any]:
        """The table as `calibration_from_json` reads it (and the benchmark writes it)."""
        data: dict[str, Any] = {"source": self.source, "impostors": self.impostors,
                                   "thresholds": list(self.thresholds),
                                   "fmrs": list(self.fmrs)}
        if self.tail is not None:
            t = self.tail
            data["tail"] = {"score": t.score, "fmr": t.fmr, "alpha": t.alpha,
                            "fitted": t.fitted, "floor": t.floor}
        return data


MAX_TABLE_POINTS = 10_000  # thresholds a calibration table may hold
MAX_SOURCE = 500  # characters of a table's description
MIN_IMPOSTORS = 100  # impostor comparisons a table must be counted on, at least


def _number(value: object, name: str, low: float, high: float,
            integer: bool = False) -> float:
    """A finite number in [low, high] (an int where `integer`), or a MatchError naming
    the field."""
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (integer and not isinstance(value, int)):
        raise MatchError(f"{name}: {value!r} is not {'an integer' if integer else 'a number'}")
    if not (math.isfinite(value) and low <= value <= high):
        raise MatchError(f"{name}: {value!r} is not in [{low:g}, {high:g}]")
    return float(value)


def calibration_from_json(data: object, name: str = "calibration") -> Calibration:
    """A calibration table from its JSON form (what `benchmarks/fingerprint.py
    --calibration-out` writes), checked field by field: `MatchError` names the first
    field that is wrong (`name` prefixes it, e.g. `phased.fmrs[3]`). Keys it does not
    know are ignored (the benchmark adds figures such as the tail's fitted slope).

    Thresholds must ascend strictly; rates lie in [0, 1] and never rise with the
    threshold; the tail, if any, starts inside the table's range and its floor is no
    higher than its starting rate."""
    if not isinstance(data, Mapping):
        raise MatchError(f"{name}: a JSON object is needed, not {type(data).__name__}")
    for key in ("source", "impostors", "thresholds", "fmrs"):
        if key not in data:
            raise MatchError(f"{name}.{key}: missing")
    source = data["source"]
    if not isinstance(source, str) or not 1 <= len(source) <= MAX_SOURCE:
        raise MatchError(f"{name}.source: a description of 1..{MAX_SOURCE} characters")
    impostors = int(_number(data["impostors"], f"{name}.impostors", MIN_IMPOSTORS, 1e15,
                            integer=True))
    thresholds, fmrs = data["thresholds"], data["fmrs"]
    for key, values in (("thresholds", thresholds), ("fmrs", fmrs)):
        if not isinstance(values, list) or not 2 <= len(values) <= MAX_TABLE_POINTS:
            raise MatchError(f"{name}.{key}: a list of 2..{MAX_TABLE_POINTS} numbers")
    if len(thresholds) != len(fmrs):
        raise MatchError(f"{name}.fmrs: {len(fmrs)} rates for {len(thresholds)} thresholds")
    ts = [_number(v, f"{name}.thresholds[{i}]", 0.0, 1.0) for i, v in enumerate(thresholds)]
    rs = [_number(v, f"{name}.fmrs[{i}]", 0.0, 1.0) for i, v in enumerate(fmrs)]
    for i in range(1, len(ts)):
        if ts[i] <= ts[i - 1]:
            raise MatchError(f"{name}.thresholds[{i}]: {ts[i]!r} does not ascend "
                             f"(after {ts[i - 1]!r})")
        if rs[i] > rs[i - 1]:
            raise MatchError(f"{name}.fmrs[{i}]: {rs[i]!r} is above the rate at a lower "
                             f"threshold ({rs[i - 1]!r}); rates never rise with the threshold")
    tail = None
    if data.get("tail") is not None:
        t = data["tail"]
        if not isinstance(t, Mapping):
            raise MatchError(f"{name}.tail: a JSON object is needed")
        for key in ("score", "fmr", "alpha", "fitted", "floor"):
            if key not in t:
                raise MatchError(f"{name}.tail.{key}: missing")
        score = _number(t["score"], f"{name}.tail.score", ts[0], ts[-1])
        if score <= 0:
            raise MatchError(f"{name}.tail.score: {score!r} is not above 0")
        rate = _number(t["fmr"], f"{name}.tail.fmr", 1e-15, 1.0)
        alpha = _number(t["alpha"], f"{name}.tail.alpha", 1e-3, 1e3)
        fitted = int(_number(t["fitted"], f"{name}.tail.fitted", 1, impostors, integer=True))
        floor = _number(t["floor"], f"{name}.tail.floor", 1e-15, rate)
        tail = Tail(score, rate, alpha, fitted, floor)
    return Calibration(tuple(ts), tuple(rs), impostors, source, tail)


# How `calibrate` builds a table (docs/biometrics.md, *Calibration* and *Rare rates*).
# Raw scores span decades: the relaxation (8 rounds keeping 30 % each) shrinks an
# unsupported pair by 0.3 ** 8, so impostors score about 3e-5 (median) to 4e-4 (the
# highest of FVC2004's 11,520) and mates 1e-4 to 1. The grid is geometric, 50 steps a
# decade from 1e-7 to 1, so that every rate the impostors resolve has its own threshold.
GRID = tuple(float(f"{t:.4g}") for t in
             np.concatenate([[0.0], np.geomspace(1e-7, 1.0, 7 * 50 + 1)]))
# The power-law tail: its slope fitted on the TAIL_FITTED highest of at least
# TAIL_MIN_IMPOSTORS impostor scores; the counts used down to the first threshold that
# at most TAIL_COUNTED impostors reach (so FMR 0.1 % is counted on 11,520), the tail
# beyond; and no comparison claimed rarer than TAIL_FLOOR.
TAIL_FITTED = 200
TAIL_COUNTED = 10
TAIL_MIN_IMPOSTORS = 2_000
TAIL_FLOOR = 1e-10


def calibrate(impostors: Sequence[float], source: str) -> Calibration:
    """The calibration table of a matcher from its impostor scores (all impostors
    protocol): the FMR counted at every threshold of GRID and, from TAIL_MIN_IMPOSTORS
    scores up, a power-law tail for the rates too rare to count (its slope Hill's
    estimate lowered by two standard errors, `evaluation.pareto_tail`)."""
    scores = [float(v) for v in impostors]
    if len(scores) < MIN_IMPOSTORS:
        raise MatchError(f"impostors: {len(scores)} comparisons; a table needs at least "
                         f"{MIN_IMPOSTORS}")
    fmrs = evaluation.fmr_table(scores, GRID)
    tail = None
    if len(scores) >= TAIL_MIN_IMPOSTORS:
        _, _, alpha = evaluation.pareto_tail(scores, TAIL_FITTED)
        if alpha > 0:
            # The counts hold down to the first threshold that at most TAIL_COUNTED
            # impostors reach; the tail takes over there, at that counted rate, so the
            # rate is continuous.
            limit = TAIL_COUNTED / len(scores)
            at = next(i for i, rate in enumerate(fmrs) if 0 < rate <= limit)
            tail = Tail(GRID[at], fmrs[at], alpha, TAIL_FITTED, TAIL_FLOOR)
    return calibration_from_json(
        Calibration(GRID, tuple(fmrs), len(scores), source, tail).as_json(), "calibration")


@cache
def calibration(phased: bool = False) -> Calibration:
    """The shipped table of single-view scores (`compare`), or with `phased` that of the
    mean over the phases (`compare_phases` between two fully phased impressions)."""
    name = "calibration-phases.json" if phased else "calibration.json"
    text = resources.files("lintas.biometrics").joinpath(name).read_text()
    return calibration_from_json(json.loads(text), name)


@dataclass(frozen=True)
class Calibrations:
    """The two tables a comparison's FMR is read from: `single` for one view against
    one view (`compare`; the 1:N index ranks on it), `phased` for the mean over the
    grid phases (`compare_phases`). A node whose sensors differ from FVC2004's gives its
    own, measured on its own impostors (docs/biometrics.md, *A node's own calibration*)."""

    single: Calibration
    phased: Calibration

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {"single": self.single.as_json(), "phased": self.phased.as_json()}

    @classmethod
    def from_json(cls, data: object) -> Calibrations:
        """Both tables from {"single": table, "phased": table}; MatchError names the
        field that is wrong."""
        if not isinstance(data, Mapping):
            raise MatchError("calibrations: a JSON object with \"single\" and \"phased\"")
        for key in ("single", "phased"):
            if key not in data:
                raise MatchError(f"{key}: missing (both tables are needed)")
        return cls(calibration_from_json(data["single"], "single"),
                   calibration_from_json(data["phased"], "phased"))


def shipped() -> Calibrations:
    """The tables that ship with Lintas (FVC2004 DB1_B-DB4_B, all impostors protocol)."""
    return Calibrations(calibration(), calibration(phased=True))


@dataclass(frozen=True)
class FusedComparison:
    fmr: float  # estimated false match rate of the fused decision
    fingers: Mapping[int, Comparison]  # per finger position compared

    @property
    def evidence(self) -> float:
        return -math.log10(self.fmr)


def compare_fingers(probe: Mapping[int, Template], reference: Mapping[int, Template],
                    calibrations: Calibrations | None = None) -> FusedComparison:
    """Compare the fingers both records hold (by finger position) and fuse the result.
    A finger may be one prepared view or its phases (see `explain`).

    Each finger's FMR is read from the calibration; the fused evidence is their sum
    (the product of the rates), which assumes independent impostor scores across
    fingers. At least one finger position must be shared.
    """
    shared = sorted(set(probe) & set(reference))
    if not shared:
        raise MatchError("fingers: the probe and the reference share no finger position "
                         f"(probe {sorted(probe)}, reference {sorted(reference)})")
    results = {position: explain(probe[position], reference[position], calibrations)
               for position in shared}
    evidence = sum(r.evidence for r in results.values())
    return FusedComparison(10.0 ** -evidence, results)
