"""Fingerprint biometrics as a pure library: arrays and bytes in, templates and scores out.

No web, no database, no service imports (an import-linter contract keeps it so).
This release holds the minutiae model and the standard template codecs
(`lintas.biometrics.formats`); extraction, quality and matching follow.
"""

from lintas.biometrics.minutiae import (
    FingerView,
    Minutia,
    MinutiaeTemplate,
    MinutiaType,
)

__all__ = ["FingerView", "Minutia", "MinutiaType", "MinutiaeTemplate"]
