"""benchmarks/tune_matcher.py: refuses bad configurations by name, and scores real prints
with the matcher recompiled under the constants given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tune_matcher.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize(("configuration", "message"), [
    ("NOT_A_CONSTANT=1", "NOT_A_CONSTANT is not a constant of lintas.biometrics.mcc"),
    ("RADIUS", "'RADIUS' is not NAME=VALUE"),
    ("RADIUS=__import__('os')", "is not a number or arithmetic on numbers and pi"),
    ("RADIUS=1/0", "is not a number or arithmetic on numbers and pi"),
])
def test_bad_configurations_are_refused_by_name(configuration: str, message: str,
                                                tmp_path: Path) -> None:
    result = run("--data", str(tmp_path), configuration)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_scores_real_prints_under_each_configuration(fvc_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune.json"
    result = run("--data", str(fvc_sample), "--json", str(out), "",
                 "RELAX_ITERATIONS=0 MU_PSI=1e9")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.rstrip().endswith(
        ("(as is)", "MU_PSI=1e9"))]
    assert len(rows) == 2
    results = json.loads(out.read_text())
    assert [r["constants"] for r in results] == [{}, {"RELAX_ITERATIONS": 0, "MU_PSI": 1e9}]
    as_is, broken = results[0]["macro"], results[1]["macro"]
    # Real prints separate under the real constants; with no bit ever set (mu_psi
    # unreachable) every comparison scores 0, so half the genuine pairs count as missed
    # at the EER and every one at FMR 0.1 %.
    assert as_is["fnmr_at_fmr_0_1pct"] < 0.5
    assert broken["fnmr_at_fmr_0_1pct"] == 1.0
