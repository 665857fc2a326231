"""Fingerprint images in: decoding, validation and resampling to 500 ppi.

Every extractor and quality measure here is calibrated for 500 ppi, so an image declared
at another resolution is resampled first; an image whose file carries no plausible
resolution (FVC2004's TIFFs read as 1x1 dpi) is taken at the resolution the caller gives,
or at 500 ppi, and says which.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

TARGET_PPI = 500.0
MIN_PPI, MAX_PPI = 250.0, 2000.0
MIN_SIDE, MAX_SIDE = 64, 4000
FORMATS = ("PNG", "TIFF", "BMP", "JPEG", "WSQ")


class ImageError(ValueError):
    """An image that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class FingerImage:
    pixels: np.ndarray  # uint8, height x width, at TARGET_PPI
    source_ppi: float
    ppi_declared: bool  # False when the file had no plausible resolution of its own

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def png(self) -> bytes:
        out = io.BytesIO()
        Image.fromarray(self.pixels, mode="L").save(out, format="PNG")
        return out.getvalue()


def _register_wsq() -> None:
    with contextlib.suppress(ImportError):  # WSQ support is optional
        import wsq  # noqa: F401  (registers the WSQ codec with Pillow)


def load_image(data: bytes, ppi: float | None = None) -> FingerImage:
    """Decode PNG, TIFF, BMP, JPEG or WSQ bytes into an 8-bit grey image at 500 ppi.

    `ppi` overrides the file's own resolution; without either, 500 ppi is assumed.
    """
    if ppi is not None and not MIN_PPI <= ppi <= MAX_PPI:
        raise ImageError(f"ppi: {ppi} is outside {MIN_PPI:.0f}..{MAX_PPI:.0f}")
    _register_wsq()
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS:
                raise ImageError(f"image format {img.format}: use one of {', '.join(FORMATS)}")
            if not (MIN_SIDE <= img.width <= MAX_SIDE and MIN_SIDE <= img.height <= MAX_SIDE):
                raise ImageError(f"image size {img.width}x{img.height}: each side must be "
                                 f"{MIN_SIDE}..{MAX_SIDE} pixels")
            declared = _declared_ppi(img)
            grey = img.convert("L")
            grey.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"not a readable image ({', '.join(FORMATS)}): {exc}") from None
    source = ppi or declared or TARGET_PPI
    if abs(source - TARGET_PPI) > 1:
        size = (round(grey.width * TARGET_PPI / source), round(grey.height * TARGET_PPI / source))
        grey = grey.resize(size, Image.Resampling.LANCZOS)
    return FingerImage(np.asarray(grey, dtype=np.uint8).copy(), source,
                       ppi is not None or declared is not None)


def _declared_ppi(img: Image.Image) -> float | None:
    dpi = img.info.get("dpi")
    if isinstance(dpi, tuple) and dpi and MIN_PPI <= float(dpi[0]) <= MAX_PPI:
        return float(dpi[0])
    return None


def from_array(pixels: np.ndarray, ppi: float = TARGET_PPI) -> FingerImage:
    """An in-memory grey image (height x width, uint8) at `ppi`."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ImageError("pixels: a 2-D uint8 array (grey levels) is required")
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return load_image(out.getvalue(), ppi)
