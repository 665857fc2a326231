"""Accuracy of MINDTCT minutiae from lightly filtered or shifted copies of each image,
alone and with their comparison scores added: how issue 4's accuracy aims were reached,
as docs/biometrics.md ("Image preprocessing before MINDTCT, and several extractions")
reports. `decoded+shift40+shift04+shift44` is the engine's grid phases
(lintas.biometrics.extraction.PHASE_SHIFTS), its scores added where the engine averages
them (the same ranking).

    .venv/bin/python benchmarks/extraction_fusion.py [--data DIR] [--ppi DB3_B=512 ...]
        [--fuse decoded+blur ...] [--json FILE]

Every image of the FVC-style databases (as for benchmarks/fingerprint.py) is decoded,
then extracted with MINDTCT as decoded and as each filter of VARIANTS leaves it; each
variant's templates are compared under the benchmark's protocols (genuine: every pair of
impressions of a finger; FVC impostors: first impressions; all impostors: every
impression against every impression of every other finger). A fusion `a+b` adds the
raw scores of variants a and b for the same pair of impressions (the fusion that needs
no training; its scores are on a scale of their own, so it has its own thresholds).
Printed per variant and fusion: macro EER (FVC protocol), FNMR at FMR 1 % and 0.1 % and
EER under the all impostors protocol, and each database's EER / FNMR at FMR 0.1 %. The
figures are measured on the data the variants were chosen on. Progress goes to stderr,
the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fingerprint

from lintas.biometrics import evaluation, matching
from lintas.biometrics.extraction import extract, shifted
from lintas.biometrics.images import FingerImage, ImageError, load_image

Filter = Callable[[Image.Image], Image.Image]


def shift(dx: int, dy: int) -> Filter:
    """The image moved as the engine's grid phases move it (border level filled in)."""
    def apply(image: Image.Image) -> Image.Image:
        grey = FingerImage(np.asarray(image, dtype=np.uint8), 500.0, True)
        return Image.fromarray(shifted(grey, dx, dy).pixels, mode="L")
    return apply


VARIANTS: dict[str, Filter] = {
    "decoded": lambda image: image,
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(1.0)),  # sigma 1 px
    "median": lambda image: image.filter(ImageFilter.MedianFilter(3)),
    "stretch": lambda image: ImageOps.autocontrast(image, cutoff=1),
    "shift40": shift(4, 0),  # half of MINDTCT's 8-pixel block, across
    "shift04": shift(0, 4),  # down
    "shift44": shift(4, 4),  # both
}
DEFAULT_FUSIONS = ["decoded+blur", "decoded+median", "decoded+median+blur", "decoded+shift44",
                   "decoded+shift40+shift04+shift44",
                   "decoded+median+blur+shift40+shift04+shift44"]


def parse_fusion(text: str) -> list[str]:
    parts = text.split("+")
    unknown = [p for p in parts if p not in VARIANTS]
    if len(parts) < 2 or unknown:
        raise SystemExit(f"--fuse: {text!r} is not two or more of {', '.join(VARIANTS)} "
                         "joined by +")
    return parts


def templates(folder: Path, name: str, ppi: float) -> tuple[list[str], dict[str, list[Any]]]:
    """Finger names, and each variant's prepared templates (None: fewer than
    fingerprint.MIN_MINUTIAE minutiae, or the image failed), in file order."""
    files = fingerprint.image_files(folder)
    fingers: list[str] = []
    out: dict[str, list[Any]] = {v: [] for v in VARIANTS}
    for n, path in enumerate(files, 1):
        fingers.append(fingerprint.NAME.match(path.name)[1])  # type: ignore[index]
        try:
            image = load_image(path.read_bytes(), ppi)
        except ImageError as exc:
            fingerprint.progress(f"  {name}/{path.name}: {exc}")
            for v in VARIANTS:
                out[v].append(None)
            continue
        for v, apply in VARIANTS.items():
            pixels = np.asarray(apply(Image.fromarray(image.pixels, mode="L")), dtype=np.uint8)
            try:
                view = extract(FingerImage(np.ascontiguousarray(pixels), image.source_ppi,
                                           image.ppi_declared))
            except ImageError:
                view = None
            ok = view is not None and len(view.minutiae) >= fingerprint.MIN_MINUTIAE
            out[v].append(matching.prepare(view) if ok else None)  # type: ignore[arg-type]
        if n % 20 == 0 or n == len(files):
            fingerprint.progress(f"  {name}: extracted {n}/{len(files)} ({len(VARIANTS)} ways)")
    return fingers, out


def rates(genuine: list[float], fvc: list[float], every: list[float]) -> dict[str, float]:
    return {"eer": evaluation.eer(genuine, fvc),
            "fnmr_at_fmr_1pct": evaluation.fnmr_at_fmr(genuine, every, 0.01),
            "fnmr_at_fmr_0_1pct": evaluation.fnmr_at_fmr(genuine, every, 0.001),
            "eer_all_impostors": evaluation.eer(genuine, every)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fingerprint.add_data_options(parser)
    parser.add_argument("--fuse", action="append", default=None, metavar="A+B",
                        help=f"variants whose scores are added (default: "
                             f"{', '.join(DEFAULT_FUSIONS)})")
    args = parser.parse_args()
    fusions = [parse_fusion(f) for f in (args.fuse or DEFAULT_FUSIONS)]
    rows = {v: [v] for v in VARIANTS} | {"+".join(f): f for f in fusions}
    per_db: dict[str, dict[str, dict[str, float]]] = {row: {} for row in rows}
    found = fingerprint.find_databases(args.data or fingerprint.default_data(),
                                       fingerprint.parse_ppi(args.ppi))
    for name, folder, ppi in found:
        fingerprint.progress(f"{name} ({ppi:.0f} ppi): extracting")
        fingers, made = templates(folder, name, ppi)
        db = fingerprint.Database(name, ppi, [fingerprint.Impression(f, 0, None) for f in fingers])
        genuine, fvc, every = fingerprint.protocols(db)
        scores = {}
        for v, temps in made.items():
            scores[v] = {(i, j): 0.0 if temps[i] is None or temps[j] is None
                         else matching.compare(temps[i], temps[j]) for i, j in genuine + every}
        for row, parts in rows.items():
            fused = {pair: sum(scores[v][pair] for v in parts) for pair in genuine + every}
            per_db[row][name] = rates([fused[p] for p in genuine], [fused[p] for p in fvc],
                                      [fused[p] for p in every])
    names = [name for name, _, _ in found]
    print(f"{'EER %':>6} {'FNMR@1%':>8} {'FNMR@0.1%':>9} {'EER all':>7}  "
          + "  ".join(f"{n + ' EER/FNMR@0.1%':>20}" for n in names) + "  minutiae from")
    result = {}
    for row in rows:
        keys = next(iter(per_db[row].values())).keys()
        macro = {k: float(np.mean([r[k] for r in per_db[row].values()])) for k in keys}
        result[row] = {"databases": per_db[row], "macro": macro}
        print(f"{100 * macro['eer']:6.2f} {100 * macro['fnmr_at_fmr_1pct']:8.2f} "
              f"{100 * macro['fnmr_at_fmr_0_1pct']:9.2f} {100 * macro['eer_all_impostors']:7.2f}  "
              + "  ".join(f"{100 * r['eer']:11.2f} / {100 * r['fnmr_at_fmr_0_1pct']:5.2f}"
                          for r in per_db[row].values()) + f"  {row}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        fingerprint.progress(f"wrote {args.json}")


if __name__ == "__main__":
    main()
