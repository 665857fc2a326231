"""A small FVC-style data folder for the benchmark scripts' tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def fvc_sample(fvc2004: Path, tmp_path: Path) -> Path:
    """A folder holding DB1_B with impressions 1-3 of fingers 101-103 (real prints)."""
    data = tmp_path / "data" / "DB1_B"
    data.mkdir(parents=True)
    for finger in (101, 102, 103):
        for impression in (1, 2, 3):
            name = f"{finger}_{impression}.tif"
            shutil.copy(fvc2004 / "DB1_B" / name, data / name)
    return data.parent
