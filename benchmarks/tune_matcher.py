"""1:1 accuracy of our matcher with some of its constants changed: how the constants in
`lintas.biometrics.mcc` were chosen (docs/biometrics.md, "Tuning").

    .venv/bin/python benchmarks/tune_matcher.py [--data DIR] [--ppi DB3_B=512 ...]
        [--json FILE] CONFIGURATION ...

Each CONFIGURATION is one quoted argument of space-separated NAME=VALUE assignments to
module-level constants of `lintas.biometrics.mcc` (VALUE: a number, or arithmetic on
numbers and `pi`), e.g. "RELAX_ITERATIONS=8 RELAX_WEIGHT=0.3"; "" is the code as it
stands. The FVC-style databases are read and their minutiae extracted (MINDTCT) once;
for each configuration the matcher is compiled afresh with those constants and every
comparison of the benchmark's protocols is scored. Printed per configuration: macro EER
(FVC protocol), FNMR at FMR 1 % and 0.1 % and the EER under the all impostors protocol
(2,880 impostor pairs a set, steadier than the FVC protocol's 45), and each database's
EER / FNMR at FMR 0.1 %. The figures are measured on the data the constants are chosen
on: they show which way a constant moves accuracy, not what a new data set will see.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import operator
import re
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fingerprint

from lintas.biometrics import evaluation, matching, mcc

OPERATORS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub,
                              ast.Mult: operator.mul, ast.Div: operator.truediv,
                              ast.USub: operator.neg}


def number(text: str) -> float | int:
    """A VALUE: numbers, + - * / and `pi` (nothing else is evaluated)."""
    def walk(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name) and node.id == "pi":
            return math.pi
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.left), walk(node.right))  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.operand))  # type: ignore[no-any-return]
        raise ValueError
    try:
        return walk(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        raise SystemExit(f"configuration: {text!r} is not a number or arithmetic on "
                         "numbers and pi") from None


def parse_configuration(text: str, source: str) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise SystemExit(f"configuration: {item!r} is not NAME=VALUE")
        if not re.search(rf"^{name} = ", source, re.M):
            raise SystemExit(f"configuration: {name} is not a constant of lintas.biometrics.mcc")
        out[name] = number(value)
    return out


def compiled_matcher(source: str, constants: dict[str, float | int]) -> types.ModuleType:
    """`lintas.biometrics.mcc` compiled with `constants` in place of its own."""
    for name, value in constants.items():
        source = re.sub(rf"^{name} = .*$", f"{name} = {value!r}", source, count=1, flags=re.M)
    module = types.ModuleType("lintas.biometrics._mcc_tuned")
    module.__file__ = "<tuned mcc>"
    exec(compile(source.replace("cache=True", "cache=False"), "<tuned mcc>", "exec"),
         module.__dict__)
    return module


def measure(databases: list[fingerprint.Database], matcher: types.ModuleType) -> dict[str, Any]:
    matching.mcc = matcher  # type: ignore[attr-defined]
    try:
        per_db = {}
        for extracted in databases:
            db = fingerprint.Database(extracted.name, extracted.ppi, [
                fingerprint.Impression(imp.finger, imp.number,
                                       None if imp.view is None else matching.prepare(imp.view))
                for imp in extracted.impressions])
            genuine, fvc_impostors, all_impostors = fingerprint.protocols(db)
            scores, _ = fingerprint.score_all(db, genuine + all_impostors, "ours/1")
            g = [scores[p] for p in genuine]
            all_i = [scores[p] for p in all_impostors]
            per_db[db.name] = {
                "eer": evaluation.eer(g, [scores[p] for p in fvc_impostors]),
                "fnmr_at_fmr_1pct": evaluation.fnmr_at_fmr(g, all_i, 0.01),
                "fnmr_at_fmr_0_1pct": evaluation.fnmr_at_fmr(g, all_i, 0.001),
                "eer_all_impostors": evaluation.eer(g, all_i)}
    finally:
        matching.mcc = mcc  # type: ignore[attr-defined]
    keys = next(iter(per_db.values())).keys()
    macro = {k: sum(r[k] for r in per_db.values()) / len(per_db) for k in keys}
    return {"databases": per_db, "macro": macro}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configurations", nargs="+", metavar="CONFIGURATION",
                        help='e.g. "" (as is) or "RELAX_ITERATIONS=8 RELAX_WEIGHT=0.3"')
    fingerprint.add_data_options(parser)
    args = parser.parse_args()
    source = Path(mcc.__file__).read_text()
    configurations = [(text, parse_configuration(text, source)) for text in args.configurations]
    databases = []
    for name, folder, ppi in fingerprint.find_databases(args.data or fingerprint.default_data(),
                                                        fingerprint.parse_ppi(args.ppi)):
        fingerprint.progress(f"{name} ({ppi:.0f} ppi): extracting")
        databases.append(fingerprint.load_database(name, folder, ppi, phases=False))
    names = [db.name for db in databases]
    print(f"{'EER %':>6} {'FNMR@1%':>8} {'FNMR@0.1%':>9} {'EER all':>7}  "
          + "  ".join(f"{n + ' EER/FNMR@0.1%':>20}" for n in names) + "  configuration")
    results = []
    for text, constants in configurations:
        fingerprint.progress(f"compiling and scoring: {text or '(as is)'}")
        result = measure(databases, compiled_matcher(source, constants))
        m = result["macro"]
        print(f"{100 * m['eer']:6.2f} {100 * m['fnmr_at_fmr_1pct']:8.2f} "
              f"{100 * m['fnmr_at_fmr_0_1pct']:9.2f} {100 * m['eer_all_impostors']:7.2f}  "
              + "  ".join(f"{100 * r['eer']:11.2f} / {100 * r['fnmr_at_fmr_0_1pct']:5.2f}"
                          for r in result["databases"].values())
              + f"  {text or '(as is)'}", flush=True)
        results.append({"configuration": text, "constants": constants, **result})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        fingerprint.progress(f"wrote {args.json}")


if __name__ == "__main__":
    main()
