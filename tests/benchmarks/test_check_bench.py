"""benchmarks/check.py: a hub and two node processes, a small gallery filled before the
responder starts, real FVC2004 probes through the officer's REST API, the figures in JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "check.py"


def test_check_benchmark_on_a_small_gallery(fvc2004: Path, tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--gallery", "300", "--checks", "6", "--concurrency", "2",
         "--warmup", "1", "--databases", "DB3_B", "--image-share", "0.2",
         "--data", str(fvc2004), "--json", str(out)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SYNTHETIC" in result.stdout and "latency ms" in result.stdout

    figures = json.loads(out.read_text())
    # The keys of the issue, with their types.
    assert isinstance(figures["gallery_fingers"], int) and figures["gallery_fingers"] == 300
    assert isinstance(figures["checks"], int) and figures["checks"] == 6
    assert isinstance(figures["checks_per_s"], float) and figures["checks_per_s"] > 0
    latency = figures["latency_ms"]
    assert all(isinstance(latency[k], float) for k in ("p50", "p99", "max"))
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    # What the gallery was made of, and what was probed.
    assert figures["real_fingers"] + figures["synthetic_fingers"] == 300
    assert figures["real_fingers"] == 7  # DB3_B: 10 fingers, 3 held out
    assert figures["responder_startup_s"] > 0 and figures["gallery_build_s"] > 0
    assert figures["mated_checks"] + figures["non_mated_checks"] == 6
    assert set(figures["latency_ms_by_probe_kind"]) <= {"template", "image"}
    assert sum(k["checks"] for k in figures["latency_ms_by_probe_kind"].values()) == 6
    assert set(figures["states"]) <= {"hit", "no_hit", "refused"}
    # Real mated probes are found, and found as their own mate.
    assert figures["mated_checks"] == 3
    assert figures["mated_hit_rate"] >= 2 / 3
    assert figures["mated_true_mate_first"] >= 2 / 3
    assert figures["non_mated_false_hit_rate"] == 0.0


def test_check_benchmark_with_two_fingers_a_person(fvc2004: Path, tmp_path: Path) -> None:
    """--fingers 2: consecutive real fingers of DB3_B enrolled as one person's right
    index and middle finger, synthetic persons of two fingers, probes of both fingers."""
    out = tmp_path / "check.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--gallery", "300", "--checks", "4", "--concurrency", "2",
         "--warmup", "0", "--databases", "DB3_B", "--image-share", "0", "--fingers", "2",
         "--data", str(fvc2004), "--json", str(out)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "300 fingers, 2 a person" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["fingers_per_person"] == 2
    # DB3_B: 10 fingers, 3 held out: 7 mated make 3 persons (one finger left out).
    assert (figures["real_persons"], figures["real_fingers"]) == (3, 6)
    assert figures["synthetic_fingers"] == 294
    assert figures["mated_checks"] == 2 and figures["mated_true_mate_first"] >= 0.5
    assert figures["non_mated_false_hit_rate"] == 0.0


def test_bad_finger_counts_are_refused_by_name() -> None:
    for args in (["--fingers", "5"], ["--fingers", "0"], ["--fingers", "2", "--gallery", "301"]):
        result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and "--fingers must be 1..4 and divide --gallery" \
            in result.stderr, args
