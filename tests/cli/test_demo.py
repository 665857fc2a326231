"""`lintas demo` plays its whole scenario and ends by itself."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lintas.cli.demo import run_demo

pytestmark = pytest.mark.slow


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


def test_demo_runs_to_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(workdir=tmp_path / "demo", base_port=four_free_ports()) == 0
    out = capsys.readouterr().out
    assert "every ping answered by a pong" in out
    assert "no readable payload" in out
    assert "found in none of the hub's files" in out
    assert "all processes stopped cleanly" in out
