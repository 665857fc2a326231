"""MINDTCT's minutia directions, checked against the image itself.

The ISO/IEC 19794-2 axis convention (counter-clockwise from the x axis, y up) is what
`lintas.biometrics` stores; these tests measure that the extractor's angles follow it,
using the local ridge orientation (structure tensor) and the grey levels along the
direction, on real FVC2004 impressions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lintas.biometrics.extraction import extract
from lintas.biometrics.images import load_image
from lintas.biometrics.minutiae import MinutiaType


def box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges clamped (numpy only)."""
    p = np.pad(a, r, mode="edge")
    c = p.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    n = 2 * r + 1
    return (c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]) / (n * n)


def ridge_axis(pixels: np.ndarray) -> np.ndarray:
    """Ridge orientation (radians, image coordinates, modulo pi) at every pixel."""
    gy, gx = np.gradient(pixels.astype(float))
    jxx, jyy, jxy = box(gx * gx, 8), box(gy * gy, 8), box(gx * gy, 8)
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2


def impressions(fvc2004: Path) -> list:
    return [load_image((fvc2004 / "DB1_B" / f"10{i}_1.tif").read_bytes()) for i in (1, 2, 3)]


def test_directions_follow_the_iso_axis_convention(fvc2004: Path) -> None:
    errors = []
    for image in impressions(fvc2004):
        axis = ridge_axis(image.pixels)
        for m in extract(image).minutiae:
            # ISO: counter-clockwise from x with y up, i.e. -angle in image coordinates.
            d = (-np.deg2rad(m.angle) - axis[m.y, m.x] + np.pi / 2) % np.pi - np.pi / 2
            errors.append(abs(np.rad2deg(d)))
    assert len(errors) > 50
    assert np.median(errors) < 15
    assert np.mean(np.array(errors) < 20) > 0.85


def test_ridge_endings_point_into_their_ridge(fvc2004: Path) -> None:
    darker_ahead = []
    for image in impressions(fvc2004):
        px = image.pixels.astype(float)
        for m in extract(image).minutiae:
            if m.type != MinutiaType.ENDING:
                continue
            dx, dy = np.cos(np.deg2rad(m.angle)), -np.sin(np.deg2rad(m.angle))

            def grey(sign: int, m=m, dx=dx, dy=dy, px=px, image=image) -> float:
                vals = []
                for r in (4, 5, 6, 7):
                    x, y = round(m.x + sign * r * dx), round(m.y + sign * r * dy)
                    if 0 <= x < image.width and 0 <= y < image.height:
                        vals.append(px[y, x])
                return float(np.mean(vals)) if vals else float("nan")

            ahead, behind = grey(1), grey(-1)
            if not (np.isnan(ahead) or np.isnan(behind)):
                darker_ahead.append(ahead < behind)
    assert len(darker_ahead) > 30
    assert np.mean(darker_ahead) > 0.85, "ridges are dark: an ending's direction runs along it"
