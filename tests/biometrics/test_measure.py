"""Calibration measured on a node's own prints (`lintas.biometrics.measure`), on real
FVC2004 images laid out as a node's folders would be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lintas.biometrics import matching
from lintas.biometrics.measure import MeasureError, extract, find_sets, measure


def own_folder(tmp_path: Path, fvc2004: Path, fingers: range, impressions: range) -> Path:
    """A node's folder: one set ("S1") of DB3_B impressions, linked, not copied."""
    folder = tmp_path / "own" / "S1"
    folder.mkdir(parents=True)
    for finger in fingers:
        for impression in impressions:
            (folder / f"{finger}_{impression}.tif").symlink_to(
                fvc2004 / "DB3_B" / f"{finger}_{impression}.tif")
    return folder.parent


def test_a_small_set_gives_counted_tables_and_names_what_it_could_not_use(
        tmp_path: Path, fvc2004: Path) -> None:
    root = own_folder(tmp_path, fvc2004, range(101, 106), range(1, 5))
    (root / "S1" / "109_1.tif").write_bytes(b"not an image")
    (root / "S1" / "notes.txt").write_text("ignored: not <finger>_<impression>")
    sets = find_sets(root)
    assert [(name, len(files)) for name, files in sets] == [("S1", 21)]
    seen: list[tuple[int, int]] = []
    impressions, failed = extract(sets, lambda name: 512.0,
                                  lambda done, total: seen.append((done, total)))
    assert seen[-1] == (21, 21) and len(impressions) == 20
    assert [name for name, _ in failed] == ["S1/109_1.tif"]
    result = measure(impressions, failed, describe="test")
    # 5 fingers x 4 impressions: C(20, 2) = 190 pairs, 5 x C(4, 2) = 30 of them genuine.
    assert (result.images, result.genuine, result.impostors) == (21, 30, 160)
    for table in (result.tables.single, result.tables.phased):
        assert table.impostors == 160 and table.tail is None  # too few for a tail
        assert table.rarest == 1 / 160 and "S1 (test)" in table.source
    assert set(result.fnmr_at_fmr) == {1e-2}  # 0.1 % is not resolved by 160 impostors


def test_too_few_impostors_or_no_images_is_a_clear_error(tmp_path: Path,
                                                         fvc2004: Path) -> None:
    with pytest.raises(MeasureError, match="is not a folder"):
        find_sets(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeasureError, match="no images named <finger>_<impression>"):
        find_sets(tmp_path / "empty")
    root = own_folder(tmp_path, fvc2004, range(101, 104), range(1, 3))
    impressions, _ = extract(find_sets(root), lambda name: 512.0)
    with pytest.raises(MeasureError, match=r"12 impostor comparisons .* at least 100"):
        measure(impressions)


def test_calibrate_counts_then_fits_a_tail_from_2000_impostors() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(matching.MatchError, match="impostors: 99 comparisons"):
        matching.calibrate((1 + rng.pareto(4.0, 99)) * 1e-5, "x")
    counted = matching.calibrate((1 + rng.pareto(4.0, 1999)) * 1e-5, "x")
    assert counted.tail is None and counted.thresholds == matching.GRID
    assert len(counted.fmrs) > 300 and counted.fmrs[0] == 1.0
    assert list(counted.fmrs) == sorted(counted.fmrs, reverse=True)
    fitted = matching.calibrate((1 + rng.pareto(4.0, 20_000)) * 1e-5, "x")
    # A Pareto sample of slope 4: the slope as fitted, lowered by two standard errors.
    assert fitted.tail is not None and 3.0 < fitted.tail.alpha < 4.0
    assert fitted.tail.fmr <= matching.TAIL_COUNTED / 20_000
    # What calibrate builds, calibration_from_json reads back as the same table.
    assert matching.calibration_from_json(fitted.as_json()) == fitted
