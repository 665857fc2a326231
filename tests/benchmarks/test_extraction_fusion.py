"""benchmarks/extraction_fusion.py: refuses a bad fusion by name, and measures every
variant and fusion on real prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "extraction_fusion.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("fusion", ["decoded", "decoded+sharpen", "+blur"])
def test_bad_fusions_are_refused_by_name(fusion: str, tmp_path: Path) -> None:
    result = run("--data", str(tmp_path), "--fuse", fusion)
    assert result.returncode != 0
    assert (f"--fuse: {fusion!r} is not two or more of decoded, blur, median, stretch, "
            "shift40") in result.stderr
    assert "Traceback" not in result.stderr


def test_every_variant_and_fusion_is_measured_on_real_prints(fvc_sample: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "fusion.json"
    result = run("--data", str(fvc_sample), "--fuse", "decoded+blur", "--fuse",
                 "decoded+shift40+shift04+shift44", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures) == {"decoded", "blur", "median", "stretch", "shift40", "shift04",
                            "shift44", "decoded+blur", "decoded+shift40+shift04+shift44"}
    for row in figures.values():
        assert set(row["databases"]) == {"DB1_B"}
        assert all(0.0 <= value <= 1.0 for value in row["macro"].values())
    assert result.stdout.rstrip().splitlines()[-1].endswith("decoded+shift40+shift04+shift44")
    # Three fingers of DB1_B: the real minutiae separate them at least as well as chance.
    assert figures["decoded"]["macro"]["eer"] < 0.5
