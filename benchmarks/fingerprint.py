"""Fingerprint benchmark: accuracy and speed of our matcher and of NIST Bozorth3, in one run.

    .venv/bin/python benchmarks/fingerprint.py [--data DIR] [--ppi DB3_B=512 ...]
        [--json FILE] [--sizes 10000,100000,1000000 | --sizes 0] [--calibration-out FILE]

--data is any folder holding FVC-style databases, `DBn_B/<finger>_<impression>.tif`
(default: $LINTAS_DATA/fvc2004, else ../shared/data/fvc2004). A database's resolution is
taken from --ppi NAME=PPI, else from a sidecar file `ppi.txt` in its folder, else 500.
For the shared FVC2004 sets pass `--ppi DB3_B=512` (`make bench-fingerprint` does).

Per database, and their macro average:
- EER under the FVC protocol (genuine: every pair of impressions of a finger; impostor:
  the first impression of each finger against the first of every other), FVC's
  definition (the midpoint of EERlow and EERhigh);
- FNMR at FMR 1 % and 0.1 % under the all impostors protocol (every impression against
  every impression of every other finger of the same database);
- failures to enrol (extraction failed, or fewer than MIN_MINUTIAE minutiae: such an
  impression takes part in every comparison with score 0, as FVC counts it);
- mean extraction time per image on one core: decoding and MINDTCT, plus, for our
  matcher, building its cylinders (Bozorth3 needs no such step);
- 1:1 comparisons per second on one core, over every comparison above (after a few
  untimed ones, repeated until a second of CPU time is measured).
"ours" is the engine's 1:1 comparison: each impression extracted at MINDTCT's four grid
phases (lintas.biometrics.extraction.PHASE_SHIFTS) and compared phase by phase, the
four scores averaged (so its extraction is four MINDTCT runs and a comparison four
matcher calls). "ours/1" is the same matcher on view 0 alone, as the 1:N index uses it.
The same figures for NIST Bozorth3 on view 0's MINDTCT minutiae are the baseline.

--calibration-out and --phase-calibration-out write the threshold <-> FMR tables of
"ours/1" and "ours", measured on every all-impostors score of the run (the files
`lintas.biometrics` ships as calibration.json and calibration-phases.json), each with the
power-law tail when the run has at least 2,000 (matching.Tail: the rates too rare to
count, beyond the first threshold that at most 10 impostors reach; its slope fitted on
the 200 highest impostor scores), built by `matching.calibrate` as `lintas gallery
calibration measure` builds a node's own. With fewer than 100 impostor comparisons no
table is written, and the run ends with status 1 after its table and JSON.

1:N search at each --sizes N (lintas.biometrics.index): the gallery holds the first
impression of every real finger of the run plus SYNTHETIC background fingers up to N,
made from real templates by mirroring, a smooth random warp of positions (about 20 px)
and directions (about 30 degrees), and 15 % minutia drop-out, so that they are new
fingers with realistic minutiae layouts (mirrored always: an unmirrored copy of a real
finger would be a mate of that finger's probes, not an impostor). Many are made from
each real template, so the crowd is less varied than as many real fingers would be.
Probes are the REAL other impressions of the real fingers (up to --probes of them).
Reported: build time, search latency p50/p99 (both cores), rank-1 with the index, rank-1
with exhaustive matching (the full matcher against every finger's full template, on
--exhaustive-probes probes from the --exhaustive-from'th (0: the first), only for N up to
--exhaustive-max; the index's rank-1 on the same probes is shown beside it), and index
bytes per finger. The table says which figures rest on synthetic data.

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lintas.biometrics import evaluation, index, matching, mcc
from lintas.biometrics.extraction import extract_native, extract_phases
from lintas.biometrics.images import ImageError, load_image
from lintas.biometrics.minutiae import FingerView
from lintas.node.checks import HIT_FPIR

MIN_MINUTIAE = 8
NAME = re.compile(r"^(\d+)_(\d+)\.(tif|tiff|png|bmp)$", re.IGNORECASE)
KEYS = ("eer", "fnmr_at_fmr_1pct", "fnmr_at_fmr_0_1pct", "fte", "extract_ms",
        "comparisons_per_s")
MATCHERS = ("ours", "ours/1", "Bozorth3")  # phases; view 0 alone; NIST's, on view 0


def default_data() -> Path:
    base = Path(os.environ.get("LINTAS_DATA", Path(__file__).resolve().parents[1].parent
                               / "shared" / "data"))
    return base / "fvc2004" if (base / "fvc2004").is_dir() else base


@dataclass
class Impression:
    finger: str
    number: int
    template: matching.MatchTemplate | None  # None: failed to enrol
    native: Any = None
    view: FingerView | None = None  # the minutiae the template was built from
    phases: tuple[matching.MatchTemplate, ...] | None = None  # all phases, view 0 first


@dataclass
class Database:
    name: str
    ppi: float
    impressions: list[Impression] = field(default_factory=list)
    extract_s: list[float] = field(default_factory=list)  # MINDTCT (image decoding included)
    prepare_s: list[float] = field(default_factory=list)  # our cylinders, on top
    phases_s: list[float] = field(default_factory=list)  # the other phases, both steps


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_databases(root: Path, ppi_options: dict[str, float]) -> list[tuple[str, Path, float]]:
    if not root.is_dir():
        raise SystemExit(f"--data: {root} is not a folder")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not any(NAME.match(f.name) for f in folder.iterdir()):
            continue
        ppi = ppi_options.get(folder.name)
        sidecar = folder / "ppi.txt"
        if ppi is None and sidecar.exists():
            try:
                ppi = float(sidecar.read_text().strip())
            except ValueError:
                raise SystemExit(f"{sidecar}: not a number") from None
        found.append((folder.name, folder, ppi or 500.0))
    if not found:
        raise SystemExit(f"--data: no FVC-style database (DBn_B/<finger>_<impression>.tif) "
                         f"under {root}")
    return found


def image_files(folder: Path) -> list[Path]:
    """A database's images, by finger and then impression number."""
    def order(path: Path) -> tuple[int, int]:
        match = NAME.match(path.name)
        assert match is not None
        return int(match[1]), int(match[2])
    return sorted((f for f in folder.iterdir() if NAME.match(f.name)), key=order)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data, --ppi and --json, as every FVC benchmark script takes them."""
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of FVC-style databases (default: the shared FVC2004)")
    parser.add_argument("--ppi", action="append", default=[], metavar="NAME=PPI",
                        help="resolution of one database, e.g. DB3_B=512 (default 500)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def load_database(name: str, folder: Path, ppi: float, phases: bool = True) -> Database:
    """Every impression extracted (view 0, and with `phases` the other grid phases)."""
    db = Database(name, ppi)
    files = image_files(folder)
    for n, path in enumerate(files, 1):
        match = NAME.match(path.name)
        assert match is not None
        finger, number = match[1], int(match[2])
        template, native, phased = None, None, None
        started = time.process_time()
        try:
            image = load_image(path.read_bytes(), ppi)
            view, native = extract_native(image)
        except ImageError as exc:
            progress(f"  {name}/{path.name}: failed to enrol: {exc}")
            view = None
        db.extract_s.append(time.process_time() - started)
        if view is not None and len(view.minutiae) >= MIN_MINUTIAE:
            started = time.process_time()
            template = matching.prepare(view)
            db.prepare_s.append(time.process_time() - started)
        if template is not None and phases:
            started = time.process_time()
            phased = matching.Phases((template, *matching.prepare_phases(
                extract_phases(image, 0, view)[1:])))
            db.phases_s.append(time.process_time() - started)
        if template is None:
            native = None
        db.impressions.append(Impression(finger, number, template, native,
                                         None if template is None else view, phased))
        if n % 20 == 0 or n == len(files):
            progress(f"  {name}: extracted {n}/{len(files)}")
    return db


def protocols(db: Database) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                     list[tuple[int, int]]]:
    """Index pairs: genuine, FVC impostors (first impressions), all impostors."""
    imps = db.impressions
    genuine, fvc_impostors, all_impostors = [], [], []
    first: dict[str, int] = {}
    for i, imp in enumerate(imps):
        first.setdefault(imp.finger, i)
    for i, j in itertools.combinations(range(len(imps)), 2):
        if imps[i].finger == imps[j].finger:
            genuine.append((i, j))
        else:
            all_impostors.append((i, j))
            if first[imps[i].finger] == i and first[imps[j].finger] == j:
                fvc_impostors.append((i, j))
    return genuine, fvc_impostors, all_impostors


WARM_UP = 20  # comparisons run before timing: the first calls load compiled code
MIN_TIMED_S = 1.0  # the timed comparisons are repeated until they took this long


def score_all(db: Database, pairs: list[tuple[int, int]], matcher: str) -> tuple[dict, float]:
    """Scores of every pair (0 where an impression failed to enrol), and comparisons/s
    (process CPU time, one thread).

    The rate leaves out the first WARM_UP comparisons (loading numba's compiled code took
    a noticeable share of the 0.1-0.2 s that one pass over a database's pairs takes our
    matcher, and cut its measured rate by about a third) and repeats the pairs until
    MIN_TIMED_S of CPU time is measured, for both matchers alike."""
    imps = db.impressions
    usable = [(i, j) for i, j in pairs
              if imps[i].template is not None and imps[j].template is not None]

    def score(i: int, j: int) -> float:
        if matcher == "Bozorth3":
            return float(imps[i].native.compare(imps[j].native))
        if matcher == "ours/1":
            return matching.compare(imps[i].template, imps[j].template)
        return matching.compare_phases(imps[i].phases, imps[j].phases)  # type: ignore[arg-type]

    for i, j in usable[:WARM_UP]:
        score(i, j)
    scores: dict[tuple[int, int], float] = {pair: 0.0 for pair in pairs}
    started = time.process_time()
    for i, j in usable:
        scores[(i, j)] = score(i, j)
    timed, elapsed = len(usable), time.process_time() - started
    while usable and elapsed < MIN_TIMED_S:
        for i, j in usable:
            score(i, j)
        timed += len(usable)
        elapsed = time.process_time() - started
    return scores, timed / elapsed if elapsed > 0 else float("nan")


def extract_s(db: Database, matcher: str) -> float:
    """Mean seconds an image takes to be ready for `matcher`: decoding and MINDTCT, our
    cylinders on top (not for Bozorth3), and the other grid phases (for ours)."""
    seconds = float(np.mean(db.extract_s))
    if matcher != "Bozorth3":
        seconds += float(np.mean(db.prepare_s or [0.0]))
    if matcher == "ours":
        seconds += float(np.mean(db.phases_s or [0.0]))
    return seconds


def measure(db: Database, matcher: str) -> tuple[dict[str, float], list[float]]:
    genuine, fvc_impostors, all_impostors = protocols(db)
    progress(f"  {db.name}: {matcher}: {len(genuine) + len(all_impostors)} comparisons")
    scores, rate = score_all(db, genuine + all_impostors, matcher)
    g = [scores[p] for p in genuine]
    fvc_i = [scores[p] for p in fvc_impostors]
    all_i = [scores[p] for p in all_impostors]
    result = {
        "eer": evaluation.eer(g, fvc_i),
        "fnmr_at_fmr_1pct": evaluation.fnmr_at_fmr(g, all_i, 0.01),
        "fnmr_at_fmr_0_1pct": evaluation.fnmr_at_fmr(g, all_i, 0.001),
        "fte": sum(1 for imp in db.impressions if imp.template is None),
        "extract_ms": 1000 * extract_s(db, matcher),
        "comparisons_per_s": rate,
    }
    return result, all_i


def macro(per_db: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {key: float(np.mean([r[key] for r in per_db.values()])) for key in KEYS}
    out["fte"] = sum(r["fte"] for r in per_db.values())
    return out


def table(results: dict[str, dict], ppis: dict[str, float]) -> str:
    head = (f"{'database':<10} {'matcher':<9} {'ppi':>4} {'EER %':>7} {'FNMR@1%':>8} "
            f"{'FNMR@0.1%':>10} {'FTE':>4} {'extract ms':>10} {'cmp/s':>9}")
    lines = [head, "-" * len(head)]
    ours, single, base = (results[m] for m in MATCHERS)
    for name in [*ours["databases"], "macro"]:
        for label, source in results.items():
            r = source["macro"] if name == "macro" else source["databases"][name]
            ppi = f"{ppis[name]:.0f}" if name in ppis else ""
            lines.append(f"{name:<10} {label:<9} {ppi:>4} {100 * r['eer']:7.2f} "
                         f"{100 * r['fnmr_at_fmr_1pct']:8.2f} "
                         f"{100 * r['fnmr_at_fmr_0_1pct']:10.2f} {r['fte']:4d} "
                         f"{r['extract_ms']:10.1f} {r['comparisons_per_s']:9.0f}")
    ratio = ours["macro"]["comparisons_per_s"] / base["macro"]["comparisons_per_s"]
    ratio1 = single["macro"]["comparisons_per_s"] / base["macro"]["comparisons_per_s"]
    lines.append(f"1:1 speed against Bozorth3 (macro): ours {ratio:.1f}x, ours/1 {ratio1:.1f}x. "
                 "ours: four grid phases of MINDTCT, scores averaged; ours/1: view 0 alone.")
    lines.append("FMR figures: all impostors protocol; EER: FVC protocol. All figures "
                 "from real images.")
    return "\n".join(lines)


def calibration_table(impostors: list[float], source: str) -> dict[str, Any]:
    """`matching.calibrate`'s table, with two more figures for the record: the tail's
    slope as fitted (before it is lowered) and how many impostors the counts stop at."""
    table = matching.calibrate(impostors, source).as_json()
    if "tail" in table:
        _, alpha, _ = evaluation.pareto_tail(impostors, matching.TAIL_FITTED)
        table["tail"] = {**table["tail"], "alpha_fitted": alpha,
                         "counted": matching.TAIL_COUNTED}
    return table


def synthetic_finger(source: matching.MatchTemplate,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, t, _ = synthetic_finger_kept(source, rng)
    return x, y, t


def synthetic_finger_kept(source: matching.MatchTemplate, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A new finger from a real template: mirrored, warped, thinned.

    Always mirrored: the mirror image of a print is a different finger to any matcher
    that allows only rotation and translation, with a realistic layout of minutiae. A
    warp of the unmirrored template is the same finger: the probes are real impressions
    of the very fingers the sources come from, so such copies are mates, not impostors
    (until 2026-12-06 half the crowd was unmirrored; at 10k those copies won 27 of the
    35 probes the index ranked wrongly, and crowded true mates out of stage 1)."""
    x, y, t = -source.x, source.y.copy(), (np.pi - source.theta) % (2 * np.pi)
    dx, dy, dt = np.zeros_like(x), np.zeros_like(y), np.zeros_like(t)
    for _ in range(3):
        k = rng.uniform(2 * np.pi / 200, 2 * np.pi / 80, 2)
        phase = rng.uniform(0, 2 * np.pi, 3)
        dx += 12 * np.sin(k[0] * x + k[1] * y + phase[0])
        dy += 12 * np.sin(k[1] * x - k[0] * y + phase[1])
        dt += 0.5 * np.sin(k[0] * y - k[1] * x + phase[2])
    keep = rng.random(x.shape[0]) > 0.15
    return (x + dx)[keep], (y + dy)[keep], ((t + dt) % (2 * np.pi))[keep], keep


def exhaustive_rank1(sample: list[tuple[int, matching.MatchTemplate]],
                     gallery_x: np.ndarray, gallery_y: np.ndarray, gallery_t: np.ndarray,
                     offsets: np.ndarray, size: int) -> float:
    """Rank-1 of the full matcher against every gallery finger's full template (all its
    minutiae), for the probes in `sample`: built and scored block by block on all cores."""
    probes = [probe for _, probe in sample]
    p_offsets = np.cumsum([0] + [p.size for p in probes])
    arrays = [np.concatenate([getattr(p, name) for p in probes])
              for name in ("x", "y", "theta", "bits", "valid", "usable")]
    best = np.full(len(probes), -1.0)
    best_key = np.zeros(len(probes), dtype=np.int64)
    block = 20000
    for first in range(0, size, block):
        last = min(size, first + block)
        lo, hi = offsets[first], offsets[last]
        scores = mcc.score_many(*arrays, p_offsets, gallery_x[lo:hi], gallery_y[lo:hi],
                                gallery_t[lo:hi], offsets[first:last + 1] - lo)
        top = scores.argmax(axis=1)
        better = scores[np.arange(len(probes)), top] > best  # ties keep the lower key
        best_key[better] = first + top[better]
        best[better] = scores[np.arange(len(probes)), top][better]
        progress(f"  1:N {size}: exhaustive, scored {last}/{size} fingers "
                 f"x {len(probes)} probes")
    return float(np.mean([best_key[i] == mate for i, (mate, _) in enumerate(sample)]))


def measure_search(databases: list[Database], size: int, probes_wanted: int,
                   exhaustive_probes: int, exhaustive_max: int,
                   exhaustive_from: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    mates: dict[tuple[str, str], int] = {}
    real_sources: list[tuple[matching.MatchTemplate, np.ndarray]] = []  # and recurring
    probes: list[tuple[int, tuple[matching.MatchTemplate, ...]]] = []  # mate, phases
    shard = index.IndexShard()
    full: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # every finger's minutiae
    keep_full = size <= exhaustive_max
    started = time.perf_counter()
    for db in databases:
        for imp in db.impressions:
            if imp.template is None:
                continue
            phases = imp.phases or (imp.template,)
            real_sources.append((imp.template, index.recurring_in(phases)))
            owner = (db.name, imp.finger)
            if owner not in mates:
                mates[owner] = len(mates)
                shard.add(mates[owner], phases)
                if keep_full:
                    full.append((imp.template.x, imp.template.y, imp.template.theta))
            else:
                probes.append((mates[owner], phases))
    batch = 20000
    for first in range(len(mates), size, batch):
        last = min(size, first + batch)
        made, recur = [], []
        for _ in range(first, last):
            source, recurs = real_sources[int(rng.integers(len(real_sources)))]
            x, y, t, kept = synthetic_finger_kept(source, rng)
            made.append((x, y, t))
            recur.append(recurs[kept])  # a crowd finger's minutiae recur where its source's do
        offsets = np.cumsum([0] + [len(x) for x, _, _ in made])
        shard.add_many(np.arange(first, last), np.concatenate([m[0] for m in made]),
                       np.concatenate([m[1] for m in made]),
                       np.concatenate([m[2] for m in made]), offsets, np.concatenate(recur))
        if keep_full:
            full += made
        progress(f"  1:N {size}: built {last}/{size}")
    build_s = time.perf_counter() - started
    order = rng.permutation(len(probes))[:probes_wanted]
    chosen = [probes[i] for i in order]
    index.search_shards([shard], chosen[0][1])  # compile before timing
    latencies, found_first, hits = [], [], []
    for n, (mate, probe) in enumerate(chosen, 1):
        started = time.perf_counter()
        found = index.search_shards([shard], probe, limit=1)
        latencies.append(time.perf_counter() - started)
        found_first.append(bool(found) and found[0].key == mate)
        # The node's hit rule: N x FMR at most HIT_FPIR (0.1 %).
        hits.append(found_first[-1] and size * found[0].fmr <= HIT_FPIR)
        if n % 50 == 0:
            progress(f"  1:N {size}: searched {n}/{len(chosen)}")
    exhaustive = None
    if keep_full:
        window = slice(exhaustive_from, exhaustive_from + exhaustive_probes)
        sample = [(mate, phases[0]) for mate, phases in chosen[window]]
        offsets = np.cumsum([0] + [len(x) for x, _, _ in full])
        exhaustive = exhaustive_rank1(sample, *(np.concatenate([f[i] for f in full])
                                                for i in range(3)), offsets, size)
        progress(f"  1:N {size}: on the exhaustive sample ({len(sample)} probes from "
                 f"probe {exhaustive_from}), index rank-1 "
                 f"{np.mean(found_first[window]):.3f}, exhaustive {exhaustive:.3f}")
    return {"p50_ms": 1000 * float(np.median(latencies)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "rank1": float(np.mean(found_first)), "rank1_exhaustive": exhaustive,
            "hit_at_fpir_0_1pct": float(np.mean(hits)),
            "rank1_index_on_exhaustive_sample": (
                None if exhaustive is None else float(np.mean(found_first[window]))),
            "exhaustive_probes": None if exhaustive is None else len(sample),
            "exhaustive_from": None if exhaustive is None else exhaustive_from,
            "bytes_per_finger": shard.bytes_per_finger, "build_s": build_s,
            "probes": len(chosen), "real_fingers": len(mates),
            "synthetic_fingers": size - len(mates)}


def search_table(search: dict[str, Any]) -> str:
    head = (f"{'1:N size':>9} {'build s':>8} {'p50 ms':>7} {'p99 ms':>7} {'rank-1':>7} "
            f"{'hit':>6} "
            f"{'exhaustive':>10} {'(index)':>7} {'sample':>6} {'B/finger':>8} {'probes':>6} "
            f"{'synthetic':>9}")
    lines = [head, "-" * len(head)]
    for size, r in search.items():
        if r["rank1_exhaustive"] is None:
            exhaustive, indexed, sample = "n/m", "", ""
        else:
            exhaustive = f"{r['rank1_exhaustive']:.3f}"
            indexed = f"{r['rank1_index_on_exhaustive_sample']:.3f}"
            sample = str(r["exhaustive_probes"])
        lines.append(f"{size:>9} {r['build_s']:8.1f} {r['p50_ms']:7.0f} {r['p99_ms']:7.0f} "
                     f"{r['rank1']:7.3f} {r['hit_at_fpir_0_1pct']:6.3f} "
                     f"{exhaustive:>10} {indexed:>7} {sample:>6} "
                     f"{r['bytes_per_finger']:8.0f} {r['probes']:6d} "
                     f"{r['synthetic_fingers']:9d}")
    lines.append("1:N: real probes against their real first impressions, in galleries "
                 "filled with SYNTHETIC fingers (see --help). exhaustive: rank-1 of the "
                 "full matcher against every finger, on `sample` probes (the first, or "
                 "from --exhaustive-from); "
                 "(index): the index's rank-1 on that same sample; n/m: not measured at "
                 "this size (--exhaustive-max). hit: the mate ranked first with "
                 "size x FMR <= 0.1 %, the node's hit rule (FMR of view 0, from the "
                 "calibration and its fitted tail; no non-mated searches are run).")
    return "\n".join(lines)


def parse_ppi(values: list[str]) -> dict[str, float]:
    out = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            out[name] = float(number)
        except ValueError:
            raise SystemExit(f"--ppi: {value!r} is not NAME=PPI (e.g. DB3_B=512)") from None
        if not 250 <= out[name] <= 2000:
            raise SystemExit(f"--ppi: {value!r}: ppi must be 250..2000")
    return out


def parse_sizes(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--sizes: {value!r} is not a comma-separated list of "
                         "integers") from None
    if any(s < 0 for s in sizes):
        raise SystemExit("--sizes: sizes cannot be negative")
    return [s for s in sizes if s > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(parser)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="1:N gallery sizes, comma-separated; 0 skips 1:N")
    parser.add_argument("--probes", type=int, default=200,
                        help="1:N probes per gallery size (real impressions)")
    parser.add_argument("--exhaustive-probes", type=int, default=40,
                        help="probes searched exhaustively, for the rank-1 baseline")
    parser.add_argument("--exhaustive-from", type=int, default=0, metavar="N",
                        help="the exhaustive sample starts at the Nth probe (0-based), so "
                             "that a long baseline can be split over runs")
    parser.add_argument("--exhaustive-max", type=int, default=100000,
                        help="largest gallery searched exhaustively")
    parser.add_argument("--calibration-out", type=Path,
                        help="write the threshold/FMR table of ours/1 (view 0) here")
    parser.add_argument("--phase-calibration-out", type=Path,
                        help="write the threshold/FMR table of ours (phases) here")
    args = parser.parse_args()
    root = args.data or default_data()
    sizes = parse_sizes(args.sizes)
    if args.probes < 1 or args.exhaustive_probes < 1:
        raise SystemExit("--probes and --exhaustive-probes must be at least 1")
    if not 0 <= args.exhaustive_from < args.probes:
        raise SystemExit(f"--exhaustive-from must be at least 0 and below --probes "
                         f"({args.probes}), not {args.exhaustive_from}")
    found = find_databases(root, parse_ppi(args.ppi))
    results: dict[str, dict[str, Any]] = {m: {"databases": {}} for m in MATCHERS}
    every_impostor: dict[str, list[float]] = {m: [] for m in MATCHERS}
    databases = []
    for name, folder, ppi in found:
        progress(f"{name} ({ppi:.0f} ppi): extracting")
        db = load_database(name, folder, ppi)
        databases.append(db)
        for matcher in MATCHERS:
            results[matcher]["databases"][name], impostors = measure(db, matcher)
            every_impostor[matcher] += impostors
    for matcher in MATCHERS:
        results[matcher]["macro"] = macro(results[matcher]["databases"])
    print(table(results, {name: ppi for name, _, ppi in found}))
    search: dict[str, Any] = {}
    for size in sizes:
        progress(f"1:N search, gallery of {size}")
        search[str(size)] = measure_search(databases, size, args.probes,
                                           args.exhaustive_probes, args.exhaustive_max,
                                           args.exhaustive_from)
    if search:
        print()
        print(search_table(search))
    result = {**results["ours"], "single_view": results["ours/1"],
              "baseline_bozorth3": results["Bozorth3"], "search": search}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {args.json}")
    names = ", ".join(name for name, _, _ in found)
    refused = []
    for out, option, matcher, what in (
            (args.calibration_out, "--calibration-out", "ours/1", "MINDTCT minutiae (view 0)"),
            (args.phase_calibration_out, "--phase-calibration-out", "ours",
             "MINDTCT minutiae at four grid phases, mean score")):
        if out:
            impostors = every_impostor[matcher]
            source = (f"all impostors protocol on {names} ({root.name}), {what}, "
                      f"{len(impostors)} impostor comparisons")
            try:
                calibrated = calibration_table(impostors, source)
            except matching.MatchError as exc:
                refused.append(f"{option}: {exc}; {out} not written")
                continue
            out.write_text(json.dumps(calibrated) + "\n")
            progress(f"wrote {out}")
    if refused:  # after the table and the JSON, which stand
        raise SystemExit("\n".join(refused))


if __name__ == "__main__":
    main()
