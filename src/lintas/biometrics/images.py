"""Fingerprint images in: decoding, validation and resampling to 500 ppi.

Every extractor and quality measure here is calibrated for 500 ppi, so an image declared
at another resolution is resampled first; an image whose file carries no plausible
resolution (FVC2004's TIFFs read as 1x1 dpi) is taken at the resolution the caller gives,
or at 500 ppi, and says which.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

TARGET_PPI = 500.0
MIN_PPI, MAX_PPI = 250.0, 2000.0
MIN_SIDE, MAX_SIDE = 64, 4000
FORMATS = ("PNG", "TIFF", "BMP", "JPEG", "WSQ")
WSQ_SOI = b"\xff\xa0"  # the start-of-image marker every WSQ file begins with
WSQ_TIMEOUT = 60.0  # seconds for decoding one batch of WSQ images


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


def load_image(data: bytes, ppi: float | None = None) -> FingerImage:
    """Decode PNG, TIFF, BMP, JPEG or WSQ bytes into an 8-bit grey image at 500 ppi.

    `ppi` overrides the file's own resolution; without either, 500 ppi is assumed. WSQ
    (recognised by its start-of-image marker) is decoded in a child process: see
    `decode_wsq_isolated`.
    """
    if ppi is not None and not MIN_PPI <= ppi <= MAX_PPI:
        raise ImageError(f"ppi: {ppi} is outside {MIN_PPI:.0f}..{MAX_PPI:.0f}")
    if bytes(data[:2]) == WSQ_SOI:
        grey, declared = _load_wsq(bytes(data)), None  # the wsq plugin reports no resolution
    else:
        grey, declared = _load_in_process(data)
    source = ppi or declared or TARGET_PPI
    if abs(source - TARGET_PPI) > 1:
        size = (round(grey.width * TARGET_PPI / source), round(grey.height * TARGET_PPI / source))
        grey = grey.resize(size, Image.Resampling.LANCZOS)
    return FingerImage(np.asarray(grey, dtype=np.uint8).copy(), source,
                       ppi is not None or declared is not None)


def _check_size(width: int, height: int) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ImageError(f"image size {width}x{height}: each side must be "
                         f"{MIN_SIDE}..{MAX_SIDE} pixels")


def _load_in_process(data: bytes) -> tuple[Image.Image, float | None]:
    """Every format but WSQ; the WSQ plugin is never asked (its data starts with SOI)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS or img.format == "WSQ":
                raise ImageError(f"image format {img.format}: use one of {', '.join(FORMATS)}")
            _check_size(img.width, img.height)
            declared = _declared_ppi(img)
            grey = img.convert("L")
            grey.load()
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image ({', '.join(FORMATS)}): the format is not "
                         "recognised") from None
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"not a readable image ({', '.join(FORMATS)}): {exc}") from None
    return grey, declared


def _load_wsq(data: bytes) -> Image.Image:
    if importlib.util.find_spec("wsq") is None:
        raise ImageError("WSQ images need the `wsq` package (pip install 'lintas[biometrics]')")
    import wsq  # noqa: F401  (registers the WSQ format with Pillow: header parsing only)

    try:  # the header only: the plugin parses it in Python, no native code runs
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception as exc:  # the plugin raises OSError, IndexError, ... on a bad header
        raise ImageError(f"not a readable WSQ image: {exc or type(exc).__name__}") from None
    _check_size(width, height)
    result = decode_wsq_isolated([data])[0]
    if isinstance(result, str):
        raise ImageError(f"not a readable WSQ image: {result}")
    if result.shape != (height, width):
        raise ImageError(f"not a readable WSQ image: its header says {width}x{height}, "
                         f"its data {result.shape[1]}x{result.shape[0]}")
    return Image.fromarray(result, mode="L")


_WSQ_CHILD = r"""
import io, sys
import wsq
from PIL import Image
data, out, pos = sys.stdin.buffer.read(), sys.stdout.buffer, 0
while pos + 4 <= len(data):
    size = int.from_bytes(data[pos:pos + 4], "big")
    chunk, pos = data[pos + 4:pos + 4 + size], pos + 4 + size
    try:
        with Image.open(io.BytesIO(chunk)) as img:
            img.load()
            width, height = img.size
            pixels = img.convert("L").tobytes()
        out.write(b"K" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + pixels)
    except Exception as exc:
        text = str(exc).encode("utf-8", "replace")[:300]
        out.write(b"E" + len(text).to_bytes(4, "big") + text)
    out.flush()
"""


def decode_wsq_isolated(payloads: list[bytes]) -> list[np.ndarray | str]:
    """Decode WSQ images in a child interpreter, so that a decoder crash on hostile data
    is an error here, not the end of this process: the NBIS decoder inside `wsq` dies
    with SIGSEGV on some corrupt data (measured here). One child decodes the whole batch.
    Each result is the grey pixels (height x width, uint8), or a str: why it failed."""
    stdin = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _WSQ_CHILD], input=stdin,
                              capture_output=True, timeout=WSQ_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return [f"decoding took longer than {WSQ_TIMEOUT:.0f} s"] * len(payloads)
    except OSError as exc:
        return [f"the WSQ decoder process could not start: {exc}"] * len(payloads)
    results: list[np.ndarray | str] = []
    out, pos = done.stdout, 0
    while pos < len(out) and len(results) < len(payloads):
        kind = out[pos:pos + 1]
        if kind == b"K" and pos + 9 <= len(out):
            width = int.from_bytes(out[pos + 1:pos + 5], "big")
            height = int.from_bytes(out[pos + 5:pos + 9], "big")
            pixels = out[pos + 9:pos + 9 + width * height]
            if len(pixels) != width * height:
                break
            results.append(np.frombuffer(pixels, dtype=np.uint8).reshape(height, width).copy())
            pos += 9 + width * height
        elif kind == b"E" and pos + 5 <= len(out):
            size = int.from_bytes(out[pos + 1:pos + 5], "big")
            results.append(out[pos + 5:pos + 5 + size].decode("utf-8", "replace"))
            pos += 5 + size
        else:
            break
    if done.returncode == 0 and len(results) == len(payloads):
        return results
    # A crash may follow an error report, or corrupt what was decoded before it: trust
    # none of this run, and blame the first image that failed or went unreported.
    failed = [i for i, r in enumerate(results) if isinstance(r, str)]
    culprit = failed[0] if failed else min(len(results), len(payloads) - 1)
    reason = (f"the WSQ decoder crashed (exit status {done.returncode})" if done.returncode
              else "the WSQ decoder gave no result")
    return [reason if i == culprit else "not decoded: the WSQ decoder failed on another image"
            for i in range(len(payloads))]


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
