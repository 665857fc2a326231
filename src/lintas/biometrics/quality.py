"""Image quality: NIST NFIQ 2 (through `nbis-py`), and thresholds with advice an officer
can act on.

NFIQ 2 refuses a few images (a blank or uniform one, for instance). Computed during
extraction, that refusal would abort the extraction too, so quality is computed on its
own and a refusal is reported as "quality unknown" (None), never as a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lintas.biometrics.images import FingerImage

Purpose = Literal["enrolment", "probe"]

# NFIQ 2's actionable feedback, in officer's words.
ADVICE = {
    "EmptyImageOrContrastTooLow": "the image is empty or too faint: clean the platen and "
                                  "press firmly",
    "UniformImage": "no ridges are visible: check the finger is on the platen",
    "FingerprintImageWithMinutiae": "too few ridge details: press flatter and keep still",
    "SufficientFingerprintForeground": "too little of the finger was captured: centre the "
                                       "finger and press flatter",
}
DEFAULT_ADVICE = "recapture, press flatter"
# When NFIQ 2's actionable feedback signals a problem: mean grey level above 250 (empty
# or washed out), grey-level deviation below 1 (uniform), fewer than 5 minutiae, fewer
# than 50,000 foreground pixels. Checked in this order, the first one found is shown.
FLAGGED = {
    "EmptyImageOrContrastTooLow": lambda v: v > 250,
    "UniformImage": lambda v: v < 1,
    "FingerprintImageWithMinutiae": lambda v: v < 5,
    "SufficientFingerprintForeground": lambda v: v < 50000,
}


@dataclass(frozen=True)
class QualityReport:
    score: int | None  # NFIQ 2, 0..100; None when NFIQ 2 refused the image
    advice: str | None  # the most pressing actionable feedback, if any


def nfiq2(image: FingerImage) -> QualityReport:
    import nbis

    from lintas.biometrics.extraction import _extractor

    try:
        result = _extractor(True).extract_minutiae(image.png()).quality()
    except nbis.NbisError:
        return QualityReport(None, ADVICE["UniformImage"])
    advice = None
    values = {getattr(v, "name", ""): float(v.value) for v in result.actionable}
    for name, flagged in FLAGGED.items():
        if name in values and flagged(values[name]):
            advice = ADVICE[name]
            break
    return QualityReport(int(result.score), advice)


@dataclass(frozen=True)
class QualityPolicy:
    """Minimum NFIQ 2 scores; refusing unknown quality is a choice of the deployment."""

    enrolment_minimum: int = 30
    probe_minimum: int = 20
    accept_unknown: bool = False

    def __post_init__(self) -> None:
        for name in ("enrolment_minimum", "probe_minimum"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name}: 0..100")

    def verdict(self, report: QualityReport, purpose: Purpose) -> str | None:
        """None if acceptable, else the message to show the officer."""
        minimum = self.enrolment_minimum if purpose == "enrolment" else self.probe_minimum
        if report.score is None:
            if self.accept_unknown:
                return None
            return f"quality unknown (NFIQ 2 could not assess the image): " \
                   f"{report.advice or DEFAULT_ADVICE}"
        if report.score < minimum:
            return f"quality {report.score} < {minimum}: {report.advice or DEFAULT_ADVICE}"
        return None
