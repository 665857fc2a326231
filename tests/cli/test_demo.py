"""`lintas demo` plays its whole scenario and ends by itself."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lintas.biometrics import formats
from lintas.cli.demo import (
    ENROLLED_IMPRESSIONS,
    PERSONS,
    POSITION,
    PROBE_IMPRESSION,
    fvc2004_db3,
    run_demo,
    synthetic_template,
)
from lintas.node import node_database
from lintas.node.checks import HIT_FPIR
from lintas.node.gallery import Gallery


def four_free_ports() -> int:
    for base in range(20400, 30000, 10):
        socks = []
        try:
            for port in range(base, base + 4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no four consecutive free ports")


@pytest.mark.slow
def test_demo_runs_to_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The scenario, on FVC2004 when the shared data is there, else on the fallback."""
    assert run_demo(workdir=tmp_path / "demo", base_port=four_free_ports()) == 0
    out = capsys.readouterr().out
    if fvc2004_db3() is not None:
        assert "FVC2004 DB3_B images (512 ppi)" in out
    else:
        assert "synthetic minutiae templates" in out and "Nothing is downloaded" in out
    for expected in (
            "result: hit; approved — as expected",  # 1: a hit, disclosed in full
            "result: no_hit — as expected",  # 2
            "result: hit; partial — as expected",  # 3
            "result: no_hit, as step 2 — as expected",  # 4: the protected refugee
            "withheld 1 candidate",
            "result: hit; stolen — as expected",  # 5: the passport, by MRZ
            "quota_exhausted: agreement AUS-THA-DEMO-01",  # 6: the error as shown
            "result: hit; refused: quota_exhausted — as expected",
            "result: intact, witnessed — as expected",  # 7: the audit chains
            "none of them found in the hub's files",
            "every step went as expected",
            "all processes stopped cleanly"):
        assert expected in out, expected
    for code in ("AUS", "IDN", "THA"):
        assert any(line.split()[1:2] == [code] and line.rstrip(" │").endswith("intact")
                   for line in out.splitlines()), code


def test_synthetic_prints_match_only_themselves_in_a_gallery(tmp_path: Path) -> None:
    """The fallback's templates go through the node's gallery as the demo needs: each
    later impression finds its own person, at the node's hit threshold, and no other."""
    db = node_database(f"sqlite:///{tmp_path / 'gallery.db'}")
    db.upgrade()
    gallery = Gallery(db)
    for person in PERSONS:
        fingers = [(POSITION, formats.read(synthetic_template(person, i)))
                   for i in ENROLLED_IMPRESSIONS]
        assert gallery.enrol(str(person), fingers).enrolled
    for person in PERSONS:
        probe, rejected = gallery.prepare_probe(
            [(POSITION, formats.read(synthetic_template(person, PROBE_IMPRESSION)))])
        assert not rejected
        found = gallery.search(probe, max_fpir=HIT_FPIR)
        assert [c.reference for c in found] == [str(person)]
