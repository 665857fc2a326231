"""The side-by-side drawing of a comparison (`lintas.biometrics.render`), on real prints."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lintas.biometrics import matching, render
from lintas.biometrics.extraction import extract
from lintas.biometrics.images import load_image


@pytest.fixture(scope="module")
def mates(fvc2004: Path):  # type: ignore[no-untyped-def]
    images = [load_image((fvc2004 / "DB1_B" / f"102_{i}.tif").read_bytes(), 500)
              for i in (1, 2)]
    views = [extract(image) for image in images]
    return images, views, [matching.prepare(v) for v in views]


def test_the_drawing_shows_both_panels_every_minutia_and_every_pair(mates) -> None:  # type: ignore[no-untyped-def]
    images, views, (probe, reference) = mates
    comparison = matching.explain(probe, reference)
    assert len(comparison.pairs) >= 4
    png = render.side_by_side(probe, reference, comparison, images[0].pixels, (640, 480))
    drawn = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    width = images[0].width + render.GAP + 640
    assert drawn.shape == (max(images[0].height, 480) + render.CAPTION, width, 3)
    # Each paired minutia is ringed in the paired colour, at its own place in its panel
    # (the ring passes 3 px from the centre); an unpaired one in the other colour.
    paired = {p.probe_index for p in comparison.pairs}
    for i, m in enumerate(views[0].minutiae):
        ring = drawn[m.y - 3:m.y + 4, m.x - 3:m.x + 4].reshape(-1, 3)
        colour = render.PAIRED if i in paired else render.MINUTIA
        assert (ring == colour).all(axis=1).any(), (i, m)
    shift = images[0].width + render.GAP
    for pair in comparison.pairs:
        m = views[1].minutiae[pair.reference_index]
        ring = drawn[m.y - 3:m.y + 4, shift + m.x - 3:shift + m.x + 4].reshape(-1, 3)
        assert (ring == render.PAIRED).all(axis=1).any()
    # The strongest pair's line, in the strongest colour, crosses the gap between panels.
    gap = drawn[:, images[0].width + 2:shift - 2].reshape(-1, 3)
    assert (gap == render.PAIR_COLOURS[-1]).all(axis=1).any()


def test_without_an_image_or_size_the_panels_fit_the_minutiae(mates) -> None:  # type: ignore[no-untyped-def]
    _, _, (probe, reference) = mates
    comparison = matching.explain(probe, reference)
    drawn = Image.open(io.BytesIO(render.side_by_side(probe, reference, comparison)))
    x = probe.x
    expected = int(np.ceil(x.max() - x.min())) + 2 * render.MARGIN
    assert drawn.width > expected + render.GAP
    with pytest.raises(ValueError, match="probe_pixels"):
        render.side_by_side(probe, reference, comparison, np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="reference_size"):
        render.side_by_side(probe, reference, comparison, reference_size=(0, 480))
