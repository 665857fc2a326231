"""A matcher's calibration measured on a node's own prints.

The shipped tables (`matching.calibration`) were measured on FVC2004's four sensors; a
node whose sensors differ measures its own here, from impressions laid out as FVC-style
sets: a folder of `<finger>_<impression>.<ext>` images (several fingers, several
impressions each), or a folder of such folders, one a sensor or collection. As in FVC,
impressions of different sets are never compared. Every impression is extracted at the
four grid phases; every pair of impressions of different fingers of a set is an
impostor comparison (the all impostors protocol), every pair of one finger a genuine
one. `lintas gallery calibrate` runs it; docs/biometrics.md, *A node's own
calibration*, explains the tables.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lintas.biometrics import evaluation, matching
from lintas.biometrics.extraction import extract_phases
from lintas.biometrics.images import ImageError, load_image

IMAGE = re.compile(r"^(?P<finger>[^_/\\]+)_(?P<impression>[0-9]+)\.(tif|tiff|png|bmp|jpg|jpeg)$",
                   re.IGNORECASE)
MIN_MINUTIAE = 8  # as the gallery requires of an enrolled print
MAX_IMAGES = 20_000  # images read in one measurement at most (about 4 x 10^8 pairs)


class MeasureError(ValueError):
    """A folder that cannot be measured; the message names what is wrong."""


@dataclass(frozen=True)
class Impression:
    set: str
    finger: str
    number: int
    phases: matching.Phases


@dataclass(frozen=True)
class Measurement:
    """The two tables, and what the node's own genuine pairs say about them."""

    tables: matching.Calibrations
    images: int
    failed: tuple[tuple[str, str], ...]  # (file, why it could not be used)
    genuine: int  # genuine comparisons
    impostors: int  # impostor comparisons
    fnmr_at_fmr: dict[float, float]  # phased FNMR at FMR 1 % and 0.1 %, where resolved


def find_sets(root: Path) -> list[tuple[str, list[Path]]]:
    """The sets under `root`: `root` itself when it holds FVC-style images, else each
    sub-folder that does. MeasureError when there is none."""
    if not root.is_dir():
        raise MeasureError(f"DIR: {root} is not a folder")

    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and IMAGE.match(p.name))

    if images(root):
        found = [(root.name, images(root))]
    else:
        found = [(sub.name, images(sub)) for sub in sorted(root.iterdir())
                 if sub.is_dir() and images(sub)]
    if not found:
        raise MeasureError(f"DIR: no images named <finger>_<impression>.tif (or .png, .bmp, "
                           f".jpg) in {root} or its sub-folders")
    total = sum(len(files) for _, files in found)
    if total > MAX_IMAGES:
        raise MeasureError(f"DIR: {total:,} images; at most {MAX_IMAGES:,} are measured at "
                           "once")
    return found


def extract(sets: Sequence[tuple[str, list[Path]]], ppi: Callable[[str], float | None],
            progress: Callable[[int, int], None] | None = None
            ) -> tuple[list[Impression], list[tuple[str, str]]]:
    """Every image extracted at the grid phases (`ppi(set)`: its resolution when the
    files do not carry a plausible one), and the files that could not be used, why."""
    done, total = 0, sum(len(files) for _, files in sets)
    found: list[Impression] = []
    failed: list[tuple[str, str]] = []
    for name, files in sets:
        for path in files:
            match = IMAGE.match(path.name)
            assert match is not None
            try:
                image = load_image(path.read_bytes(), ppi(name))
                views = extract_phases(image)
            except (ImageError, OSError) as exc:
                failed.append((f"{name}/{path.name}", str(exc)))
            else:
                if len(views[0].minutiae) < MIN_MINUTIAE:
                    failed.append((f"{name}/{path.name}", f"only {len(views[0].minutiae)} "
                                   f"minutiae (at least {MIN_MINUTIAE} are needed)"))
                else:
                    found.append(Impression(name, match["finger"], int(match["impression"]),
                                            matching.prepare_phases(views)))
            done += 1
            if progress is not None:
                progress(done, total)
    return found, failed


def measure(impressions: Sequence[Impression], failed: Sequence[tuple[str, str]] = (),
            describe: str = "a node's own prints",
            progress: Callable[[int, int], None] | None = None) -> Measurement:
    """Score every pair of each set, one view and phased, and build both tables."""
    by_set: dict[str, list[Impression]] = {}
    for imp in impressions:
        by_set.setdefault(imp.set, []).append(imp)
    pairs = [(a, b) for group in by_set.values() for a, b in itertools.combinations(group, 2)]
    impostor_single, impostor_phased, genuine_phased = [], [], []
    for n, (a, b) in enumerate(pairs, 1):
        phased = matching.compare_phases(a.phases, b.phases)
        if a.finger == b.finger:
            genuine_phased.append(phased)
        else:
            impostor_single.append(matching.compare(a.phases[0], b.phases[0]))
            impostor_phased.append(phased)
        if progress is not None and (n % 1000 == 0 or n == len(pairs)):
            progress(n, len(pairs))
    if len(impostor_phased) < matching.MIN_IMPOSTORS:
        raise MeasureError(
            f"DIR: {len(impostor_phased)} impostor comparisons (pairs of impressions of "
            f"different fingers within a set); a table needs at least "
            f"{matching.MIN_IMPOSTORS}: give more fingers")
    sets = ", ".join(sorted(by_set))
    count = len(impostor_phased)
    tables = matching.Calibrations(
        matching.calibrate(impostor_single, f"all impostors protocol on {sets} ({describe}), "
                                            f"MINDTCT minutiae (view 0), {count} impostor "
                                            "comparisons"),
        matching.calibrate(impostor_phased, f"all impostors protocol on {sets} ({describe}), "
                                            "MINDTCT minutiae at four grid phases, mean "
                                            f"score, {count} impostor comparisons"))
    fnmr = {} if not genuine_phased else {  # at the rates the impostors resolve
        rate: evaluation.fnmr_at_fmr(genuine_phased, impostor_phased, rate)
        for rate in (1e-2, 1e-3) if rate * count >= 1}
    return Measurement(tables, len(impressions) + len(failed), tuple(failed),
                       len(genuine_phased), count, fnmr)
