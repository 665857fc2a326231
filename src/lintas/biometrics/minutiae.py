"""Minutiae: the domain model every format is read into and written from.

Conventions (those of ISO/IEC 19794-2 and ANSI/INCITS 378): pixel coordinates with the
origin at the top-left of the image, x to the right and y downwards; the direction is
in degrees in [0, 360), measured counter-clockwise from the x axis.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class MinutiaType(enum.IntEnum):
    """The standard two-bit minutia type code."""

    OTHER = 0
    ENDING = 1
    BIFURCATION = 2


# Pixels per centimetre of a 500 ppi image, as the standards store resolution.
PPCM_500_PPI = 197


@dataclass(frozen=True)
class Minutia:
    x: int
    y: int
    angle: float  # degrees, counter-clockwise from the x axis, in [0, 360)
    type: MinutiaType = MinutiaType.ENDING
    quality: int | None = None  # 1..100 when known

    def __post_init__(self) -> None:
        if not (0 <= self.x < 1 << 14 and 0 <= self.y < 1 << 14):
            raise ValueError(f"minutia position ({self.x}, {self.y}) outside 0..16383")
        if not (math.isfinite(self.angle) and 0 <= self.angle < 360):
            raise ValueError(f"minutia angle {self.angle} outside [0, 360)")
        if self.quality is not None and not 0 <= self.quality <= 100:
            raise ValueError(f"minutia quality {self.quality} outside 0..100")


@dataclass(frozen=True)
class FingerView:
    """One impression of one finger: its position code and minutiae.

    `position` is the ISO/ANSI finger position code: 0 unknown, 1 right thumb ... 5 right
    little, 6 left thumb ... 10 left little. `impression` is the impression type code
    (0 live-scan plain, 1 live-scan rolled, 2 non-live plain, 3 non-live rolled, ...).
    """

    position: int
    minutiae: tuple[Minutia, ...]
    quality: int = 0  # finger quality 0..100 (0: not assessed)
    view: int = 0  # view number of this finger, 0..15
    impression: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.position <= 10:
            raise ValueError(f"finger position {self.position} outside 0..10")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"finger quality {self.quality} outside 0..100")
        if not 0 <= self.view <= 15:
            raise ValueError(f"view number {self.view} outside 0..15")
        if len(self.minutiae) > 255:
            raise ValueError("at most 255 minutiae per finger view")


@dataclass(frozen=True)
class MinutiaeTemplate:
    """A minutiae record: the image geometry and one or more finger views."""

    width: int
    height: int
    views: tuple[FingerView, ...] = field(default=())
    resolution_x: int = PPCM_500_PPI  # pixels per centimetre
    resolution_y: int = PPCM_500_PPI

    def __post_init__(self) -> None:
        if not (0 < self.width < 1 << 14 and 0 < self.height < 1 << 14):
            raise ValueError(f"image size {self.width}x{self.height} outside 1..16383")
        if not (self.resolution_x > 0 and self.resolution_y > 0):
            raise ValueError("resolution must be positive (pixels per centimetre)")
        for view in self.views:
            for m in view.minutiae:
                if m.x >= self.width or m.y >= self.height:
                    raise ValueError(
                        f"minutia at ({m.x}, {m.y}) lies outside the "
                        f"{self.width}x{self.height} image"
                    )

    @property
    def ppi(self) -> float:
        return self.resolution_x * 2.54
