"""`lintas agreement`, `lintas check` and `lintas protection` against two real node
servers (with their loops) and a real hub: what they print, and refusals as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lintas.cli.main import app
from tests.node.test_api_checks import AGREEMENT, Api, apis, backend, terms, until
from tests.node.test_checks import TD3

__all__ = ["apis", "backend"]  # fixtures used here
runner = CliRunner()


def run(api: Api, role: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--node", api.url],
                           env={"LINTAS_TOKEN": api.tokens[role], "COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of an error message: {result.exception!r}")
    return result.exit_code, result.output


def test_agreement_and_document_check_from_the_command_line(
        apis: tuple[Api, Api], tmp_path: Path, fvc2004: Path) -> None:
    aus, idn = apis
    terms_file = tmp_path / "terms.json"
    terms_file.write_text(json.dumps(terms().as_json()))
    code, out = run(aus, "admin", "agreement", "propose", str(terms_file))
    assert code == 0 and "proposed" in out and "AUS asks IDN" in out
    assert "a fingerprint hit at most 1,000 false hits per million searches" in \
        " ".join(out.replace("│", " ").split())
    until(lambda: run(idn, "admin", "agreement", "list")[1], lambda o: "received" in o)
    code, out = run(idn, "admin", "agreement", "countersign", AGREEMENT)
    assert code == 0 and "active" in out
    until(lambda: run(aus, "officer", "agreement", "show", AGREEMENT)[1],
          lambda o: re.search(r"status\s+│ active", o) is not None)
    idn.ok("admin", "POST", "/api/v1/documents", 201,
           json={"document_number": "L898902C3", "issuing_state": "UTO",
                 "document_type": "P", "status": "stolen"})
    mrz = tmp_path / "mrz.txt"
    mrz.write_text(TD3)
    code, out = run(aus, "officer", "check", "submit", "--partner", "IDN", "--agreement",
                    AGREEMENT, "--purpose", "border_control", "--mrz-file", str(mrz),
                    "--wait", "60")
    assert code == 0 and "sent" in out, out
    assert re.search(r"state\s+│ hit", out) and re.search(r"outcome\s+│ hit", out), out
    assert "hit at" not in out  # a document check has no score
    # A fingerprint check (IDN has enrolled no one): a no-hit, and the rate a hit needed.
    code, out = run(aus, "officer", "check", "submit", "--partner", "IDN", "--agreement",
                    AGREEMENT, "--purpose", "border_control", "--finger",
                    f"2={fvc2004 / 'DB3_B' / '101_3.tif'}", "--ppi", "512", "--wait", "60")
    assert code == 0 and re.search(r"outcome\s+│ no_hit", out), out
    assert re.search(r"hit at\s+│ FPIR ≤ 0.001 \(as agreed", out), out
    code, out = run(aus, "officer", "check", "list", "--side", "requester")
    assert code == 0 and "document" in out and "2 checks" in out
    # An officer may not answer step 2 nor change agreements: the node's refusal, one line.
    code, out = run(aus, "officer", "agreement", "suspend", AGREEMENT, "--reason", "x")
    assert code == 2 and "forbidden" in out and "Traceback" not in out
    code, out = run(aus, "admin", "agreement", "suspend", AGREEMENT, "--reason", "review")
    assert code == 0 and "suspended" in out


@pytest.mark.parametrize(("args", "needle"), [
    (("check", "submit", "--partner", "IDN", "--agreement", AGREEMENT, "--purpose",
      "border_control"), "give --finger"),
    (("check", "submit", "--partner", "IDN", "--agreement", AGREEMENT, "--purpose",
      "border_control", "--finger", "11=x.png"), "--finger"),
    (("check", "status", "no-such-check"), "not_found"),
    (("protection", "add", "nobody", "--kind", "refugee", "--state", "AUS"), "not_found"),
    (("agreement", "show", "NONE-1"), "not_found"),
])
def test_refusals_are_one_clear_line(apis: tuple[Api, Api], args: tuple[str, ...],
                                     needle: str) -> None:
    aus, _ = apis
    role = "admin" if args[0] in ("protection", "agreement") else "officer"
    code, out = run(aus, role, *args)
    assert code == 2 and needle in out and "Traceback" not in out


def test_no_token_is_refused(apis: tuple[Api, Api]) -> None:
    aus, _ = apis
    result = runner.invoke(app, ["agreement", "list", "--node", aus.url],
                           env={"LINTAS_TOKEN": "", "LINTAS_TOKEN_FILE": ""})
    assert result.exit_code == 2 and "no API token" in result.output
