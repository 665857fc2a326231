"""`lintas gallery ...` end to end on a temporary SQLite node database, real FVC2004 prints."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lintas.biometrics.extraction import extract_template
from lintas.biometrics.formats.ansi_nist import Finger, Transaction, write_transaction
from lintas.biometrics.images import from_array, load_image
from lintas.cli.main import app
from lintas.node import node_database

runner = CliRunner()


def run(*args: str, node: Path | None = None, input: str | None = None) -> tuple[int, str]:
    extra = ["--data-dir", str(node)] if node is not None else []
    result = runner.invoke(app, [*args, *extra], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of an error message: {result.exception!r}"
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def node(tmp_path: Path) -> Path:
    data = tmp_path / "node"
    node_database(f"sqlite:///{data / 'node.db'}").upgrade()
    return data


def row(output: str, first: str) -> str:
    """The table line whose first cell is `first`."""
    return next(line for line in output.splitlines()
                if line.startswith("│") and line.strip("│ ").startswith(first + " "))


def test_enrol_a_folder_then_list_show_search_delete(node: Path, fvc2004: Path) -> None:
    folder = fvc2004 / "DB3_B"
    code, out = run("gallery", "enrol-folder", str(folder), "--ppi", "512",
                    "--pattern", "10[13567]_[12].tif", node=node)
    assert code == 0, out
    assert "enrolled" in out and "10/10" in out, "the progress bar's last state"
    assert "persons enrolled │ 5" in out and "fingers enrolled │ 10" in out
    assert "prints rejected  │ 0" in out

    code, out = run("gallery", "list", node=node)
    assert code == 0 and "5 persons, 10 impressions" in out
    assert [row(out, p).split("│")[3].strip() for p in ("101", "107")] == ["2", "2"]

    code, out = run("gallery", "show", "103", node=node)
    assert code == 0 and "right thumb" in out and out.count("right thumb") == 2

    code, out = run("gallery", "search", str(folder / "103_3.tif"), "--ppi", "512",
                    "--limit", "3", node=node)
    assert code == 0, out
    assert "Candidates among 5 enrolled persons" in out
    first = row(out, "1").split("│")
    assert first[2].strip() == "103" and float(first[3]) < 1e-3
    assert float(first[4]) == pytest.approx(5 * float(first[3]), rel=0.1)  # FPIR: 5 persons
    assert row(out, "3")  # three candidates listed, each with its FMR
    code, out = run("gallery", "search", str(folder / "103_3.tif"), "--ppi", "512",
                    "--max-fpir", "0.001", node=node)
    assert code == 0 and row(out, "1").split("│")[2].strip() == "103"
    with pytest.raises(StopIteration):  # the mate alone reaches the node's hit rate
        row(out, "2")
    code, out = run("gallery", "search", str(folder / "103_3.tif"), "--ppi", "512",
                    "--max-fpir", "0", node=node)
    assert code == 2 and "--max-fpir: must be above 0" in out

    code, out = run("gallery", "delete", "103", node=node, input="n\n")
    assert code == 1 and "not deleted" in out
    code, out = run("gallery", "delete", "103", "--yes", node=node)
    assert code == 0 and "deleted" in out and "2 impressions" in out
    code, out = run("gallery", "show", "103", node=node)
    assert code == 2 and "no person '103'" in out
    code, out = run("gallery", "enrol-folder", str(folder), "--ppi", "512",
                    "--pattern", "101_1.tif", node=node)
    assert code == 1 and "already enrolled" in out and "--replace" in out


def test_rejected_files_are_listed_with_their_reason(node: Path, fvc2004: Path,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "prints"
    (folder / "ID-7").mkdir(parents=True)
    shutil.copy(fvc2004 / "DB3_B" / "101_1.tif", folder / "ID-7" / "2_1.tif")
    (folder / "ID-7" / "3_1.png").write_bytes(
        from_array(np.full((300, 300), 255, np.uint8)).png())  # blank: no ridges
    (folder / "ID-8_1.png").write_bytes(b"not an image")
    (folder / "notes.png").write_bytes(b"")
    code, out = run("gallery", "enrol-folder", str(folder), node=node)
    assert code == 1, out
    assert "persons enrolled │ 1" in out and "fingers enrolled │ 1" in out
    assert "prints rejected  │ 3" in out
    assert "not a readable image" in row(out, "ID-8_1.png")
    assert "neither" in row(out, "notes.png")
    assert "quality" in row(out, "ID-7/3_1.png")
    code, out = run("gallery", "show", "ID-7", node=node)
    assert code == 0 and "right index" in out


def test_enrol_from_ansi_nist_transactions(node: Path, fvc2004: Path, tmp_path: Path) -> None:
    image = load_image((fvc2004 / "DB3_B" / "105_1.tif").read_bytes(), ppi=512)
    common = {"tot": "CAR", "dat": dt.date(2025, 3, 1), "dai": "ID0000001",
              "ori": "AU0000001"}
    with_image = Transaction(tcn="TCN-1", fingers=(Finger(position=2, image=image),),
                             type2={"2.010": "NAT-105"}, **common)
    minutiae = extract_template(image, position=3)
    minutiae_only = Transaction(tcn="TCN-2", fingers=(Finger(position=3, minutiae=minutiae),),
                                type2={"2.010": "NAT-205"}, **common)
    files = []
    for name, tx in (("a.an2", with_image), ("b.an2", minutiae_only)):
        files.append(tmp_path / name)
        files[-1].write_bytes(write_transaction(tx))
    broken = tmp_path / "c.an2"
    broken.write_bytes(files[0].read_bytes()[:200])
    code, out = run("gallery", "enrol-nist", *map(str, files), str(broken),
                    "--reference-field", "2.010", node=node)
    assert code == 1, out
    assert "persons enrolled │ 2" in out and "prints rejected  │ 1" in out
    assert row(out, "c.an2")  # the broken file, with what is wrong with it
    code, out = run("gallery", "show", "NAT-105", node=node)
    assert code == 0 and "right index" in out
    code, out = run("gallery", "show", "NAT-205", node=node)
    assert code == 0 and "right middle" in out and "—" in out, "no image: NFIQ 2 unknown"
    code, out = run("gallery", "enrol-nist", str(files[0]), node=node)  # reference: the TCN
    assert code == 0 and "persons enrolled │ 1" in out
    assert run("gallery", "show", "TCN-1", node=node)[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["gallery", "list", "--data-dir", "{tmp}/missing"], "--data-dir: no node database"),
    (["gallery", "enrol-folder", "{tmp}/missing", "--data-dir", "{node}"], "FOLDER"),
    (["gallery", "enrol-folder", "{tmp}", "--pattern", "*.nothing", "--data-dir", "{node}"],
     "FOLDER: no image files"),
    (["gallery", "enrol-folder", "{tmp}", "--position", "11", "--data-dir", "{node}"],
     "--position"),
    (["gallery", "enrol-nist", "{tmp}/x.an2", "--reference-field", "3.001", "--data-dir",
      "{node}"], "--reference-field: '3.001' is not a Type-2 field"),
    (["gallery", "search", "{tmp}/x.an2", "--data-dir", "{node}"],
     "IMAGE {tmp}/x.an2: not a readable image"),
    (["gallery", "search", "{tmp}/x.an2", "{tmp}/x.an2", "--position", "1", "--data-dir",
      "{node}"], "--position: 2 images need 2 --position values"),
    (["gallery", "search", "{tmp}/x.an2", "--ppi", "50", "--data-dir", "{node}"],
     "ppi: 50.0 is outside 250..2000"),
    (["gallery", "delete", "nobody", "--yes", "--data-dir", "{node}"], "no person 'nobody'"),
    (["gallery", "show", " padded", "--data-dir", "{node}"], "reference: ' padded'"),
])
def test_bad_input_is_one_clear_line(node: Path, tmp_path: Path, args: list[str],
                                     message: str) -> None:
    (tmp_path / "x.an2").write_bytes(b"1.001:")
    values = [a.format(tmp=tmp_path, node=node) for a in args]
    result = runner.invoke(app, values)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 2
    assert message.format(tmp=tmp_path) in " ".join(result.output.split()), result.output


def test_help_explains_the_folder_layouts() -> None:
    code, out = run("gallery", "enrol-folder", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "<person>_<impression>.<ext>" in text
    assert "<person>/<position>_<impression>.<ext>" in text


def test_other_commands_do_not_load_the_biometric_stack() -> None:
    """`lintas node serve` and friends start without importing numba, numpy or Pillow
    (a slow start made nodes miss their health deadline on a loaded machine)."""
    import subprocess
    import sys

    code = ("import sys, lintas.cli.main; "
            "print(sorted(m for m in ('numba', 'numpy', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_node_sets_shows_and_resets_its_own_calibration(node: Path, tmp_path: Path,
                                                           fvc2004: Path) -> None:
    """The tables are checked before anything is stored, name the option and the field
    when wrong, change the rates a search reports, and are audited."""
    import json

    from lintas.biometrics.matching import calibration

    code, out = run("gallery", "calibration", "show", node=node)
    assert code == 0 and "the shipped calibration" in out
    assert row(out, "0.001").split("│")[2].strip() == f"{calibration().threshold(1e-3):.3g}"

    folder = fvc2004 / "DB3_B"
    code, out = run("gallery", "enrol-folder", str(folder), "--ppi", "512",
                    "--pattern", "10[1-4]_1.tif", node=node)
    assert code == 0, out
    search = ("gallery", "search", str(folder / "102_3.tif"), "--ppi", "512", "--limit", "1")
    code, out = run(*search, node=node)
    shipped_fmr = float(row(out, "1").split("│")[3])

    tables = {}
    for name, phased in (("single", False), ("phased", True)):
        data = calibration(phased).as_json()
        data["fmrs"] = [min(1.0, r * 100) for r in data["fmrs"]]  # a sensor 100 x worse
        data["tail"]["fmr"] *= 100
        data["source"] = f"our own sensor, {name}"
        tables[name] = tmp_path / f"{name}.json"
        tables[name].write_text(json.dumps(data))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(tables["phased"].read_text()),
                               "fmrs": [0.5, 1.0] + [0.0] * 350}))
    code, out = run("gallery", "calibration", "set", "--single", str(tables["single"]),
                    "--phased", str(bad), node=node)
    assert code == 2
    assert f"--phased {bad}: table.fmrs[1]: 1.0 is above the rate" in " ".join(out.split())
    bad.write_text('{"source": ')
    code, out = run("gallery", "calibration", "set", "--single", str(bad),
                    "--phased", str(tables["phased"]), node=node)
    assert code == 2 and f"--single {bad}: not JSON" in " ".join(out.split())
    code, out = run("gallery", "calibration", "show", node=node)
    assert "the shipped calibration" in out  # nothing was stored

    code, out = run("gallery", "calibration", "set", "--single", str(tables["single"]),
                    "--phased", str(tables["phased"]), node=node)
    assert code == 0 and "calibration set" in out
    assert "our own sensor, phased" in " ".join(out.split())
    code, out = run("gallery", "calibration", "show", node=node)
    assert "this node's own calibration" in out and "our own sensor, single" in out
    code, out = run(*search, node=node)
    assert float(row(out, "1").split("│")[3]) == pytest.approx(100 * shipped_fmr, rel=0.02)
    code, out = run("gallery", "calibration", "show", "--json", node=node)
    assert json.loads(out)["phased"]["source"] == "our own sensor, phased"

    code, out = run("gallery", "calibration", "reset", node=node)
    assert code == 0 and "reset" in out
    code, out = run(*search, node=node)
    assert float(row(out, "1").split("│")[3]) == shipped_fmr
    from lintas.node.audit import AuditLog

    audit = AuditLog(node_database(f"sqlite:///{node / 'node.db'}"))
    assert [(e.action, e.outcome) for e in audit.entries()] == [
        ("gallery.calibration", "set"), ("gallery.calibration", "reset")]
    assert all(e.actor.startswith("cli:") for e in audit.entries())
    code, out = run("audit", "verify", node=node)
    assert code == 0, out


def test_a_node_measures_its_own_calibration_on_its_sensors_prints(
        node: Path, tmp_path: Path, fvc2004: Path) -> None:
    """DB3_B as a node's own sensor (80 images, 2,880 impostor comparisons): the tables
    are measured, written and set in one command. DB3's thermal sweep sensor has a
    heavier impostor tail than the four sensors pooled (docs/biometrics.md, *Rare
    rates*), so its own threshold for a rare rate lies higher than the shipped one."""
    import json

    from lintas.biometrics.matching import calibration, calibration_from_json

    own = tmp_path / "own"
    own.mkdir()
    (own / "DB3_B").symlink_to(fvc2004 / "DB3_B")
    code, out = run("gallery", "calibration", "measure", str(own), "--ppi", "DB3_B=oops",
                    node=node)
    assert code == 2 and "--ppi: 'DB3_B=oops' is not N or SET=N" in out
    code, out = run("gallery", "calibration", "measure", str(own), "--ppi", "20", node=node)
    assert code == 2 and "--ppi: '20': a resolution of 250..2000 ppi" in out
    code, out = run("gallery", "calibration", "measure", str(tmp_path), node=node)
    assert code == 2 and "no images named <finger>_<impression>" in " ".join(out.split())

    single, phased = tmp_path / "single.json", tmp_path / "phased.json"
    code, out = run("gallery", "calibration", "measure", str(own), "--ppi", "DB3_B=512",
                    "--single-out", str(single), "--phased-out", str(phased), "--set",
                    node=node)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "80 images, 0 not used; 2,880 impostor and 280 genuine comparisons" in flat
    assert "FNMR" in flat and "at FMR 0.1% (phases)" in flat
    assert "calibration set" in flat and "no fitted tail" not in flat
    tables = {name: calibration_from_json(json.loads(path.read_text()))
              for name, path in (("single", single), ("phased", phased))}
    assert tables["phased"].tail is not None and tables["phased"].impostors == 2880
    assert tables["phased"].threshold(1e-6) > 1.5 * calibration(phased=True).threshold(1e-6)
    code, out = run("gallery", "calibration", "show", "--json", node=node)
    assert json.loads(out)["phased"] == tables["phased"].as_json()
    code, out = run("gallery", "calibration", "show", node=node)
    assert "this node's own calibration" in out and "DB3_B (own)" in out


def test_explain_draws_a_probe_beside_the_enrolled_finger(node: Path, tmp_path: Path,
                                                          fvc2004: Path) -> None:
    from PIL import Image

    folder = fvc2004 / "DB3_B"
    code, out = run("gallery", "enrol-folder", str(folder), "--ppi", "512",
                    "--pattern", "10[12]_[12].tif", node=node)
    assert code == 0, out
    drawing = tmp_path / "review.png"
    code, out = run("gallery", "explain", str(folder / "101_3.tif"), "101", "--ppi", "512",
                    "--out", str(drawing), node=node)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "101, finger 1 (right thumb), impression" in flat and f"wrote {drawing}" in flat
    shares = [int(cell) for cell in re.findall(r"│ (\d+)% +│", out)]
    assert len(shares) >= 4 and 95 <= sum(shares) <= 105  # each pair's share of the score
    png = Image.open(drawing)
    assert png.format == "PNG" and png.width > 2 * 300  # probe image + reference panel

    for args, message in (
            (("101_3.tif", "999"), "REFERENCE: no person '999' in the gallery"),
            (("101_3.tif", "101", "--position", "2"),
             "--position: 101 has no finger 2 (right index) enrolled"),
    ):
        code, out = run("gallery", "explain", str(folder / args[0]), *args[1:], "--ppi",
                        "512", "--out", str(tmp_path / "x.png"), node=node)
        assert code == 2 and message in " ".join(out.split()), out
    assert not (tmp_path / "x.png").exists()
