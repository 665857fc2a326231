"""A comparison drawn side by side for a reviewing officer: the probe on the left (its
image, where there is one), the reference on the right (its minutiae only: galleries
keep templates, never images), every minutia as a dot with a tick along its direction,
and a line joining each pair of minutiae that make the score, the stronger pairs
brighter and wider. Pillow draws it; the result is PNG bytes.

    minutiae_of(template) -> x, y (image coordinates), theta, in `prepare` order
    side_by_side(probe, reference, comparison, probe_pixels=None,
                 reference_size=None, caption="") -> bytes
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

from lintas.biometrics.matching import Comparison, MatchTemplate

GAP = 24  # pixels between the two panels
CAPTION = 28  # pixels of caption band below them
TICK = 10.0  # pixels: the length of a minutia's direction tick
MARGIN = 16  # pixels around minutiae drawn without an image
PAIR_COLOURS = ((255, 200, 0), (255, 120, 0), (230, 0, 0))  # weak .. strong pairs
MINUTIA = (0, 110, 255)
PAIRED = (0, 170, 0)
MAX_SIDE = 4096  # pixels: a panel larger than this is refused (not a fingerprint)


def minutiae_of(template: MatchTemplate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The minutiae in the order given to `prepare` (x, y in image coordinates, y down;
    theta in radians, counter-clockwise)."""
    order = np.argsort(template.index)
    return template.x[order], -template.y[order], template.theta[order]


def _panel(template: MatchTemplate, pixels: np.ndarray | None,
           size: tuple[int, int] | None) -> tuple[Image.Image, float, float]:
    """The panel's background and the offset at which its minutiae are drawn."""
    x, y, _ = minutiae_of(template)
    if pixels is not None:
        if pixels.ndim != 2 or pixels.dtype != np.uint8:
            raise ValueError("probe_pixels: an 8-bit grey image (height x width) is needed")
        background = Image.fromarray(pixels, "L").convert("RGB")
        return background, 0.0, 0.0
    if size is not None:
        width, height = size
        dx = dy = 0.0
    else:
        lo_x = float(x.min()) if x.size else 0.0
        lo_y = float(y.min()) if y.size else 0.0
        width = math.ceil((float(x.max()) if x.size else 0.0) - lo_x) + 2 * MARGIN
        height = math.ceil((float(y.max()) if y.size else 0.0) - lo_y) + 2 * MARGIN
        dx, dy = MARGIN - lo_x, MARGIN - lo_y
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"reference_size: {width} x {height} is not 1..{MAX_SIDE} a side")
    return Image.new("RGB", (width, height), (255, 255, 255)), dx, dy


def side_by_side(probe: MatchTemplate, reference: MatchTemplate, comparison: Comparison,
                 probe_pixels: np.ndarray | None = None,
                 reference_size: tuple[int, int] | None = None, caption: str = "") -> bytes:
    """The comparison as a PNG image (see the module's docstring). `probe` and
    `reference` are the view-0 templates the comparison's pairs index into (their
    minutiae as given to `prepare`); `probe_pixels` the probe's image at the templates'
    resolution; `reference_size` the reference's width and height (default: its
    minutiae's extent)."""
    left, ldx, ldy = _panel(probe, probe_pixels, None)
    right, rdx, rdy = _panel(reference, None, reference_size)
    width = left.width + GAP + right.width
    height = max(left.height, right.height) + CAPTION
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + GAP, 0))
    draw = ImageDraw.Draw(canvas)
    draw.line([(left.width + GAP // 2, 0), (left.width + GAP // 2, height - CAPTION)],
              fill=(180, 180, 180), width=1)
    px, py, pt = minutiae_of(probe)
    rx, ry, rt = minutiae_of(reference)
    ox = left.width + GAP + rdx
    paired_probe = {p.probe_index for p in comparison.pairs}
    paired_reference = {p.reference_index for p in comparison.pairs}
    for xs, ys, ts, shift_x, shift_y, paired in ((px, py, pt, ldx, ldy, paired_probe),
                                                  (rx, ry, rt, ox, rdy, paired_reference)):
        for i in range(xs.shape[0]):
            cx, cy = float(xs[i]) + shift_x, float(ys[i]) + shift_y
            colour = PAIRED if i in paired else MINUTIA
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], outline=colour, width=2)
            # theta is counter-clockwise with y up; the image's y runs down
            draw.line([(cx, cy), (cx + TICK * math.cos(ts[i]), cy - TICK * math.sin(ts[i]))],
                      fill=colour, width=2)
    strongest = max((p.contribution for p in comparison.pairs), default=0.0)
    for pair in sorted(comparison.pairs, key=lambda p: p.contribution):
        share = pair.contribution / strongest if strongest > 0 else 0.0
        colour = PAIR_COLOURS[min(len(PAIR_COLOURS) - 1, int(share * len(PAIR_COLOURS)))]
        a = (float(px[pair.probe_index]) + ldx, float(py[pair.probe_index]) + ldy)
        b = (float(rx[pair.reference_index]) + ox, float(ry[pair.reference_index]) + rdy)
        draw.line([a, b], fill=colour, width=1 + round(2 * share))
    draw.text((8, height - CAPTION + 8), caption or (
        f"score {comparison.score:.3g}, FMR {comparison.fmr:.2g}, "
        f"{len(comparison.pairs)} paired minutiae"), fill=(0, 0, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()
