"""The shared public fingerprint data (FVC2004), found through LINTAS_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fvc2004() -> Path:
    root = Path(os.environ.get("LINTAS_DATA", REPO.parent / "shared" / "data")) / "fvc2004"
    if not (root / "DB1_B" / "101_1.tif").exists():
        if os.environ.get("CI"):
            pytest.fail(f"FVC2004 data is required under CI and missing at {root}")
        pytest.skip(f"FVC2004 data not found at {root} (set LINTAS_DATA)")
    return root
