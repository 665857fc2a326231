"""Images in, minutiae and quality out, on real FVC2004 impressions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lintas.biometrics.extraction import extract, extract_template
from lintas.biometrics.formats import ISO_2005, ISO_2011, read, write
from lintas.biometrics.images import ImageError, from_array, load_image
from lintas.biometrics.minutiae import MinutiaeTemplate
from lintas.biometrics.quality import QualityPolicy, QualityReport, nfiq2


def test_extracts_minutiae_from_a_real_impression(fvc2004: Path) -> None:
    image = load_image((fvc2004 / "DB1_B" / "101_1.tif").read_bytes())
    assert (image.width, image.height) == (640, 480)
    assert not image.ppi_declared, "FVC TIFFs carry no usable resolution"
    view = extract(image, position=2)
    assert 10 <= len(view.minutiae) <= 255
    assert all(0 <= m.x < 640 and 0 <= m.y < 480 for m in view.minutiae)
    assert {m.type.name for m in view.minutiae} <= {"ENDING", "BIFURCATION"}
    template = extract_template(image)
    for fmt in (ISO_2005, ISO_2011):
        back = read(write(template, fmt))
        assert [(m.x, m.y) for m in back.views[0].minutiae] == \
               [(m.x, m.y) for m in template.views[0].minutiae]


def test_declared_resolution_is_respected(fvc2004: Path) -> None:
    data = (fvc2004 / "DB3_B" / "101_1.tif").read_bytes()  # 512 ppi sensor, 300x480
    image = load_image(data, ppi=512)
    assert (image.width, image.height) == (round(300 * 500 / 512), round(480 * 500 / 512))
    # A resolution stored in the file is used when the caller gives none.
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.save(out, format="PNG", dpi=(1000, 1000))
    assert load_image(out.getvalue()).width == 150


def test_wsq_images_are_read(fvc2004: Path) -> None:
    import wsq  # noqa: F401

    with Image.open(fvc2004 / "DB2_B" / "101_1.tif") as img:
        out = io.BytesIO()
        img.convert("L").save(out, format="WSQ")
    image = load_image(out.getvalue())
    assert (image.width, image.height) == (328, 364)
    assert len(extract(image).minutiae) >= 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image", "not a readable image"),
        (b"", "not a readable image"),
    ],
)
def test_bad_images_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_image_size_and_ppi_limits() -> None:
    with pytest.raises(ImageError, match="image size"):
        from_array(np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageError, match="ppi"):
        from_array(np.zeros((200, 200), np.uint8), ppi=100)
    gif = io.BytesIO()
    Image.new("L", (100, 100)).save(gif, format="GIF")
    with pytest.raises(ImageError, match="image format GIF"):
        load_image(gif.getvalue())


def test_nfiq2_scores_real_images_and_reports_refusal_as_unknown(fvc2004: Path) -> None:
    report = nfiq2(load_image((fvc2004 / "DB1_B" / "101_1.tif").read_bytes()))
    assert report.score is not None and 0 <= report.score <= 100
    blank = nfiq2(from_array(np.full((400, 300), 200, np.uint8)))
    assert blank.score is None and blank.advice


def test_policy_messages_an_officer_can_act_on() -> None:
    policy = QualityPolicy(enrolment_minimum=30, probe_minimum=20)
    assert policy.verdict(QualityReport(45, None), "enrolment") is None
    assert policy.verdict(QualityReport(25, None), "probe") is None
    message = policy.verdict(QualityReport(12, None), "enrolment")
    assert message == "quality 12 < 30: recapture, press flatter"
    assert "unknown" in (policy.verdict(QualityReport(None, None), "probe") or "")
    assert QualityPolicy(accept_unknown=True).verdict(QualityReport(None, None), "probe") is None
    with pytest.raises(ValueError, match="enrolment_minimum"):
        QualityPolicy(enrolment_minimum=101)


def test_grid_phases_find_the_same_minutiae_in_the_image_frame(fvc2004: Path) -> None:
    """extract_phases runs MINDTCT on the print shifted by half a block; each view's
    minutiae are put back in the image's coordinates, so most of view 0's minutiae have
    a counterpart at the same place in every other view (a wrong sign or a missing
    shift would move all of them 4-6 px and fail the 3 px test)."""
    from lintas.biometrics.extraction import PHASE_SHIFTS, extract_phases
    from lintas.biometrics.matching import PHASES

    image = load_image((fvc2004 / "DB1_B" / "102_1.tif").read_bytes())
    views = extract_phases(image, position=3)
    assert len(views) == len(PHASE_SHIFTS) == PHASES
    assert [v.view for v in views] == [0, 1, 2, 3]
    assert all(v.position == 3 for v in views)
    assert views[0].minutiae == extract(image, position=3).minutiae
    first = np.array([(m.x, m.y) for m in views[0].minutiae], dtype=float)
    for view in views[1:]:
        assert all(0 <= m.x < image.width and 0 <= m.y < image.height for m in view.minutiae)
        other = np.array([(m.x, m.y) for m in view.minutiae], dtype=float)
        nearest = np.sqrt(((first[:, None, :] - other[None, :, :]) ** 2).sum(-1)).min(1)
        assert np.mean(nearest <= 3) >= 0.6, f"view {view.view}"
        assert view.minutiae != views[0].minutiae  # a different grid, other false minutiae
    # Phased views travel as the views of one ISO/IEC 19794-2 record.
    template = MinutiaeTemplate(image.width, image.height, views)
    for fmt in (ISO_2005, ISO_2011):
        back = read(write(template, fmt))
        assert [v.view for v in back.views] == [0, 1, 2, 3]
        assert [len(v.minutiae) for v in back.views] == [len(v.minutiae) for v in views]
