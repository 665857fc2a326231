"""`lintas demo`: a hub and three national nodes as separate processes on loopback,
playing the check scenario end to end.

Everything goes through the commands an operator types (`hub init`, `node init`, `user
add`, `hub member add`, `hub serve`, `node serve`, `audit head`) and the nodes' REST APIs,
each call made with the API token of a user whose role makes it (docs/users.md).

AUS asks IDN (answers given automatically) and THA (a supervisor reviews each request
first; two checks a day):

  1. a hit at IDN and its step-2 disclosure, approved in full;
  2. a no-hit;
  3. a hit whose disclosure IDN's supervisor approves only in part;
  4. a recognised refugee's record, protected at IDN from AUS: answered as a no-hit;
  5. a stolen passport reported at THA, found by its MRZ;
  6. the AUS-THA daily quota running out (`quota_exhausted`);

then every node's audit chain is verified against the heads the hub witnessed, the
data-protection report is printed, and the hub's files are searched for anything
readable. The galleries are enrolled from FVC2004 DB3_B (512 ppi) when the shared data is
there ($LINTAS_DATA, else ../shared/data next to the repository); otherwise from
synthetic minutiae templates, and the demo says so. Nothing is ever downloaded.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lintas.cli.common import console

T = TypeVar("T")

MEMBERS = (("AUS", "Australia"), ("IDN", "Indonesia"), ("THA", "Thailand"))
ROLES = ("officer", "supervisor", "dpo")
CANARY = "CANARY-" + "7f3a9c1e"  # a marker placed in payloads, searched for at the hub
AUDIT_HEAD_EVERY_S = 2  # the demo's nodes publish their audit heads this often
TIMEOUT_S = 60.0  # for each thing the demo waits for
REPO = Path(__file__).resolve().parents[3]

AUS_IDN = "AUS-IDN-DEMO-01"
AUS_THA = "AUS-THA-DEMO-01"
THA_DAILY_QUOTA = 2
CATEGORIES = ["name", "nationality", "date_of_birth"]
# The ICAO Doc 9303 specimen passport, reported stolen at THA in step 5.
SPECIMEN_MRZ = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
                "L898902C36UTO7408122F1204159ZE184226B<<<<<10")
SPECIMEN_NUMBER = "L898902C3"

# FVC2004 DB3_B: persons 101-110, impressions 1-8, 512 ppi. Each gallery enrols
# impressions 1 and 4 of its persons (right index finger); checks send impression 3.
PERSONS = tuple(range(101, 111))
GALLERIES = {"AUS": (108, 109, 110), "IDN": (101, 102, 103, 104, 105, 106),
             "THA": (105, 106, 107)}
ENROLLED_IMPRESSIONS = (1, 4)  # NFIQ 2 at least 31: every one passes enrolment (30)
PROBE_IMPRESSION = 3
POSITION = 2  # right index
DB3_PPI = 512
# What IDN may disclose at step 2 about three of its records (made-up people).
PERSON_DATA = {
    "IDN-101": {"name": "SITI RAHAYU", "nationality": "IDN", "date_of_birth": "1990-04-17"},
    "IDN-103": {"name": "ARIF HIDAYAT", "nationality": "IDN", "date_of_birth": "1985-11-02"},
    "IDN-102": {"name": "NOOR AHMADI", "date_of_birth": "1994-06-30"},
}
REFUGEE = "IDN-102"
ANSWERED = {"hit", "no_hit", "refused", "expired"}


class DemoError(Exception):
    pass


@dataclass
class Proc:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _lintas(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "lintas", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise DemoError(f"`lintas {' '.join(args)}` failed:\n{result.stderr or result.stdout}")
    return result.stdout


def _start(name: str, args: list[str], url: str, env: dict[str, str], cwd: Path) -> Proc:
    log = cwd / f"{name}.out"
    with log.open("ab") as fh:  # appended: a restarted server keeps its earlier output
        process = subprocess.Popen([sys.executable, "-m", "lintas", *args], env=env, cwd=cwd,
                                   stdout=fh, stderr=subprocess.STDOUT)
    return Proc(name, url, process, log)


def _wait_healthy(proc: Proc, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise DemoError(f"{proc.name} exited:\n{proc.log.read_text()[-2000:]}")
        try:
            if httpx.get(proc.url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise DemoError(f"{proc.name} did not become healthy in time")


def _stop(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait()


def local_environment(work: Path) -> dict[str, str]:
    """This process's environment without LINTAS_ settings, plus fresh hub and node
    passphrase files (0600) in `work`: what every local multi-process set-up needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    for role in ("hub", "node"):
        path = work / f"{role}.pass"
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
        env[f"LINTAS_{role.upper()}_PASSPHRASE_FILE"] = str(path)
    return env


def until(what: str, fetch: Callable[[], T], done: Callable[[T], bool],
          timeout: float = TIMEOUT_S) -> T:
    """Poll `fetch` until `done` holds; DemoError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not reached in {timeout:.0f}s")
        time.sleep(0.1)


# --- the nodes' REST APIs -------------------------------------------------------------


@dataclass
class Api:
    """One node's REST API, called as one of its users (by role)."""

    code: str
    url: str
    tokens: dict[str, str] = field(default_factory=dict)  # role -> API token

    def call(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=60,
                             headers={"Authorization": f"Bearer {self.tokens[role]}"}, **kw)

    def ok(self, role: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.call(role, method, path, **kw)
        if r.status_code != status:
            raise DemoError(f"{self.code} {method} {path} as {role}: HTTP {r.status_code} "
                            f"{error_text(r)}")
        return r.json() if r.content else None

    def check(self, role: str, check_id: str) -> dict[str, Any] | None:
        """The node's record of a check, or None while it has not arrived."""
        r = self.call(role, "GET", f"/api/v1/checks/{check_id}")
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise DemoError(f"{self.code} GET check {check_id}: HTTP {r.status_code} "
                            f"{error_text(r)}")
        return dict(r.json())

    def check_in(self, role: str, check_id: str, states: Iterable[str],
                 what: str) -> dict[str, Any]:
        wanted = set(states)
        found = until(f"{self.code}: {what}", lambda: self.check(role, check_id),
                      lambda c: c is not None and c["state"] in wanted)
        assert found is not None
        return found


def error_text(r: httpx.Response) -> str:
    try:
        err = r.json()["error"]
        return f"{err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return r.text[:500]


# --- the fingerprints ---------------------------------------------------------------


def fvc2004_db3() -> Path | None:
    """FVC2004 DB3_B under $LINTAS_DATA (else ../shared/data next to the repository), if
    every image the demo uses is there."""
    base = os.environ.get("LINTAS_DATA") or str(REPO.parent / "shared" / "data")
    db3 = Path(base) / "fvc2004" / "DB3_B"
    needed = [db3 / f"{p}_{i}.tif" for p in PERSONS
              for i in (*ENROLLED_IMPRESSIONS, PROBE_IMPRESSION)]
    return db3 if all(path.is_file() for path in needed) else None


SYNTHETIC_SIZE = (400, 480)  # width, height in pixels at 500 ppi
SYNTHETIC_MINUTIAE = 45


def synthetic_template(person: int, impression: int) -> bytes:
    """An ISO/IEC 19794-2:2011 record of a made-up right index finger: `person` fixes its
    minutiae; each impression after the first is displaced, rotated a little, jittered and
    loses some minutiae, as two captures of one finger differ."""
    from lintas.biometrics import formats
    from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType

    width, height = SYNTHETIC_SIZE
    rng = random.Random(person)
    points: list[tuple[float, float, float, MinutiaType]] = []
    while len(points) < SYNTHETIC_MINUTIAE:
        x, y = rng.uniform(40, width - 40), rng.uniform(40, height - 40)
        if all(math.hypot(x - a, y - b) > 18 for a, b, _, _ in points):
            points.append((x, y, rng.uniform(0, 360),
                           rng.choice((MinutiaType.ENDING, MinutiaType.BIFURCATION))))
    capture = random.Random(person * 1000 + impression)
    dx, dy, turn, drop, jitter = 0.0, 0.0, 0.0, 0.05, 0.0
    if impression > 1:
        dx, dy = capture.uniform(-15, 15), capture.uniform(-15, 15)
        turn, drop, jitter = capture.uniform(-10, 10), 0.15, 2.0
    cos, sin = math.cos(math.radians(turn)), math.sin(math.radians(turn))
    cx, cy = width / 2, height / 2
    minutiae = []
    for x, y, angle, kind in points:
        if capture.random() < drop:
            continue
        # Counter-clockwise on screen, whose y axis points down.
        nx = cx + (x - cx) * cos + (y - cy) * sin + dx + capture.gauss(0, jitter)
        ny = cy - (x - cx) * sin + (y - cy) * cos + dy + capture.gauss(0, jitter)
        if 0 <= nx < width and 0 <= ny < height:
            minutiae.append(Minutia(int(nx), int(ny), (angle + turn) % 360.0, kind, 60))
    view = FingerView(POSITION, tuple(minutiae), quality=60)
    return formats.write(MinutiaeTemplate(width, height, (view,)), formats.ISO_2011)


@dataclass(frozen=True)
class Prints:
    """The demo's fingerprints, as the REST API takes them: FVC2004 DB3_B images when
    `db3` is given, else synthetic ISO/IEC 19794-2:2011 templates."""

    db3: Path | None

    @property
    def source(self) -> str:
        if self.db3 is not None:
            return f"FVC2004 DB3_B images ({DB3_PPI} ppi) from {self.db3}"
        return "synthetic minutiae templates (ISO/IEC 19794-2:2011)"

    def name(self, person: int, impression: int) -> str:
        kind = "FVC2004 DB3_B" if self.db3 is not None else "synthetic"
        return f"{kind} {person}_{impression}"

    def finger(self, person: int, impression: int) -> dict[str, Any]:
        if self.db3 is not None:
            data = (self.db3 / f"{person}_{impression}.tif").read_bytes()
            return {"position": POSITION, "kind": "image", "ppi": DB3_PPI,
                    "data": base64.b64encode(data).decode()}
        return {"position": POSITION, "kind": "template",
                "data": base64.b64encode(synthetic_template(person, impression)).decode()}


# --- the scenario's record --------------------------------------------------------------


@dataclass
class Outcome:
    step: str
    expected: str
    got: str
    optional: bool = False  # a part other work is still building: shown, not required

    @property
    def ok(self) -> bool:
        return self.expected == self.got


@dataclass
class Network:
    work: Path
    env: dict[str, str]
    base_port: int
    hub_db: Path
    hub_url: str
    procs: list[Proc]
    apis: dict[str, Api] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    hub_needles: list[str] = field(default_factory=lambda: [CANARY, SPECIMEN_NUMBER])

    def start_node(self, code: str) -> Proc:
        port = self.base_port + 1 + [c for c, _ in MEMBERS].index(code)
        proc = _start(code, ["node", "serve", "--data-dir", str(self.work / code), "--port",
                             str(port), "--log-file", str(self.work / f"{code}.log"),
                             "--audit-head-every", str(AUDIT_HEAD_EVERY_S)],
                      self.apis[code].url, self.env, self.work)
        self.procs.append(proc)
        return proc

    def wait_in_contact(self, code: str) -> None:
        """Until the node's /health says it reached the hub."""
        until(f"{code} in contact with the hub",
              lambda: httpx.get(self.apis[code].url + "/health", timeout=5).json(),
              lambda h: h["status"] == "ok")

    def record(self, step: str, expected: str, got: str, optional: bool = False) -> Outcome:
        outcome = Outcome(step, expected, got, optional)
        self.outcomes.append(outcome)
        return outcome


def step_panel(title: str, lines: list[str], outcome: Outcome, *extra: Any) -> None:
    """A step: what happened, anything to show (`extra`: rich renderables), the result."""
    if outcome.ok:
        mark = "[green]as expected[/]"
    elif outcome.optional:
        mark = "[yellow]not available yet[/]"
    else:
        mark = f"[bold red]NOT as expected[/] (expected {escape(outcome.expected)})"
    console.print(Panel(Group(*lines, *extra, "", f"[bold]result:[/] {escape(outcome.got)} — "
                              f"{mark}"),
                        title=f"[bold]{title}[/]", title_align="left",
                        border_style="green" if outcome.ok else
                        "yellow" if outcome.optional else "red"))


# --- running it -------------------------------------------------------------------------


def run_demo(keep_running: bool = False, workdir: Path | None = None, base_port: int = 8400) -> int:
    started = time.monotonic()
    with ExitStack() as stack:
        if workdir is None:
            work = Path(tempfile.mkdtemp(prefix="lintas-demo-"))
            stack.callback(shutil.rmtree, work, True)
        else:
            work = workdir.resolve()
            if work.exists() and any(work.iterdir()):
                console.print(f"[red]error:[/] --workdir {work} is not empty")
                return 2
            work.mkdir(parents=True, exist_ok=True)
        procs: list[Proc] = []
        stack.callback(_stop, procs)
        try:
            return _play(work, base_port, procs, keep_running, started)
        except (DemoError, httpx.HTTPError) as exc:
            console.print(f"[bold red]demo failed:[/] {escape(str(exc))}")
            if workdir is not None:
                console.print(f"the servers' logs are in {work}")
            _stop(procs)
            return 1


def _play(work: Path, base_port: int, procs: list[Proc], keep_running: bool,
          started: float) -> int:
    console.print(Panel(
        "Lintas demo: one regional hub, three national nodes (AUS, IDN, THA), sealed "
        "envelopes. AUS checks people and a passport against IDN and THA under two "
        "bilateral agreements. Everything runs on 127.0.0.1 as separate processes, driven "
        "through the `lintas` commands and the nodes' REST APIs.", title="lintas demo"))
    net = Network(work, local_environment(work), base_port, work / "hub" / "hub.db",
                  f"http://127.0.0.1:{base_port}", procs)
    db3 = fvc2004_db3()
    prints = Prints(db3)
    _set_up(net)
    _agree(net)
    _enrol(net, prints)
    _step_hit_and_disclosure(net, prints)
    no_hit = _step_no_hit(net, prints)
    _step_partial(net, prints)
    _step_refugee(net, prints, no_hit)
    _step_stolen_passport(net)
    _step_quota(net, prints)
    _step_audit(net)
    _step_report(net)
    _step_hub_store(net)

    table = Table("step", "expected", "got", "", title="The scenario")
    for o in net.outcomes:
        table.add_row(o.step, o.expected, o.got, "[green]✓[/]" if o.ok else
                      "[yellow]![/]" if o.optional else "[red]✗[/]")
    console.print(table)
    failed = [o for o in net.outcomes if not o.ok and not o.optional]
    if failed:
        for o in failed:
            console.print(f"[bold red]demo failed:[/] {escape(o.step)}: expected "
                          f"{escape(o.expected)}, got {escape(o.got)}")
        _stop(procs)
        return 1
    console.print(f"[bold green]every step went as expected[/] "
                  f"({'FVC2004 DB3_B' if db3 else 'synthetic templates'})")

    if keep_running:
        lines = [f"hub  {net.hub_url}/docs"]
        for code, api in net.apis.items():
            lines.append(f"{code}  {api.url}/docs")
            lines += [f"     {role:<10} {token}" for role, token in api.tokens.items()]
        lines += [f"files: {work}", "press Ctrl-C to stop them"]
        console.print(Panel("\n".join(lines), title="servers running (API tokens by role)"))
        _wait_for_interrupt(procs)
        _stop(procs)
        console.print("[green]all processes stopped cleanly[/]")
        return 0
    _stop(procs)
    console.print(f"[green]all processes stopped cleanly[/] in "
                  f"{time.monotonic() - started:.1f}s total")
    return 0


def _set_up(net: Network) -> None:
    work, env = net.work, net.env
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        step = progress.add_task("hub: init (database + signing key)", total=None)
        out = _lintas("hub", "init", "--db", f"sqlite:///{net.hub_db}", env=env, cwd=work)
        fp = " ".join(out.split("fingerprint:")[1].split())
        hub = _start("hub", ["hub", "serve", "--db", f"sqlite:///{net.hub_db}", "--port",
                             str(net.base_port), "--log-file", str(work / "hub.log")],
                     net.hub_url, env, work)
        net.procs.append(hub)
        _wait_healthy(hub, time.monotonic() + TIMEOUT_S)
        progress.update(step, description=f"hub: serving on {net.hub_url}, key {fp[:19]}…")
        progress.stop_task(step)

        tasks = {}
        for i, (code, _) in enumerate(MEMBERS, start=1):
            net.apis[code] = Api(code, f"http://127.0.0.1:{net.base_port + i}")
            tasks[code] = progress.add_task(f"{code}: node init", total=None)

        def bring_up(code: str, name: str) -> None:
            """One node, as its operator would: init, onboarding at the hub, serve, users."""
            data, task, api = work / code, tasks[code], net.apis[code]
            _lintas("node", "init", "--member", code, "--hub-url", net.hub_url,
                    "--hub-fingerprint", fp, "--data-dir", str(data), "--yes", env=env,
                    cwd=work)
            api.tokens["admin"] = (data / "api-token").read_text().strip()
            progress.update(task, description=f"{code}: hub member add")
            _lintas("hub", "member", "add", code, "--name", name, "--keys",
                    str(data / f"{code}.keys.json"), "--db", f"sqlite:///{net.hub_db}",
                    env=env, cwd=work)
            proc = net.start_node(code)
            for role in ROLES:
                progress.update(task, description=f"{code}: node serve; user add {role}")
                out = _lintas("user", "add", f"{role}.{code.lower()}", "--role", role,
                              "--data-dir", str(data), env=env, cwd=work)
                api.tokens[role] = out.strip().splitlines()[-1].strip()
            _wait_healthy(proc, time.monotonic() + TIMEOUT_S)
            net.wait_in_contact(code)
            progress.update(task, description=f"{code}: onboarded at the hub, serving on "
                                              f"{api.url}; users admin, "
                                              f"{', '.join(ROLES)}")
            progress.stop_task(task)

        with ThreadPoolExecutor(len(MEMBERS)) as pool:
            list(pool.map(bring_up, *zip(*MEMBERS, strict=True)))


def _terms(agreement_id: str, partner: str, mode: str, daily: int, annual: int,
           query_types: tuple[str, ...], disclosure: tuple[str, ...]) -> dict[str, Any]:
    from lintas.policy import Agreement, Direction

    today = datetime.now(UTC).date()
    return Agreement(agreement_id, f"Border checks AUS to {partner} (demo)", "AUS", partner,
                     today - timedelta(days=1), today + timedelta(days=365),
                     (Direction("AUS", partner, ("border_control", "asylum"), query_types,
                                mode, 3, daily, annual, disclosure, 30),)).as_json()


def _agree(net: Network) -> None:
    aus = net.apis["AUS"]
    plans = [
        (AUS_IDN, "IDN", _terms(AUS_IDN, "IDN", "automatic", 1000, 100_000,
                                ("fingerprint_1n", "document"), tuple(CATEGORIES))),
        (AUS_THA, "THA", _terms(AUS_THA, "THA", "review", THA_DAILY_QUOTA, 500,
                                ("fingerprint_1n", "document"), ("name",))),
    ]
    with console.status("agreements: proposed by AUS, countersigned by IDN and THA"):
        for _, _, terms in plans:
            aus.ok("admin", "POST", "/api/v1/agreements", 201, json=terms)
        for agreement_id, partner, _ in plans:
            api, path = net.apis[partner], f"/api/v1/agreements/{agreement_id}"
            until(f"{partner} receives {agreement_id}", partial(api.call, "admin", "GET", path),
                  lambda r: r.status_code == 200 and r.json()["status"] == "received")
            api.ok("admin", "POST", path + "/countersign")
        for agreement_id, _, _ in plans:
            until(f"AUS sees {agreement_id} active",
                  partial(aus.ok, "officer", "GET", f"/api/v1/agreements/{agreement_id}"),
                  lambda a: a["status"] == "active")
    table = Table("agreement", "AUS may ask", "answers", "quota a day", "step-2 disclosure",
                  title="Agreements: proposed by AUS's admin, countersigned through the "
                        "REST API, registered at the hub")
    for agreement_id, partner, terms in plans:
        d = terms["directions"][0]
        table.add_row(agreement_id, f"{partner}: {', '.join(d['query_types'])}",
                      d["response_mode"], str(d["daily_quota"]), ", ".join(d["disclosure"]))
    console.print(table)


def _enrol(net: Network, prints: Prints) -> None:
    if prints.db3 is None:
        console.print(Panel(
            "[yellow]FVC2004 DB3_B was not found[/] (set LINTAS_DATA to the folder holding "
            "fvc2004/, by default ../shared/data next to the repository). The galleries "
            "are enrolled from [bold]synthetic minutiae templates[/] instead, sent as "
            "ISO/IEC 19794-2:2011 records; the scenario is the same. Nothing is downloaded.",
            title="sample data", border_style="yellow"))
    else:
        console.print(f"sample data: {prints.source}")
    jobs: dict[str, str] = {}
    for code, persons in GALLERIES.items():
        body = {"persons": [{"reference": f"{code}-{p}", "label": prints.name(p, 1),
                             "fingers": [prints.finger(p, i) for i in ENROLLED_IMPRESSIONS]}
                            for p in persons]}
        jobs[code] = net.apis[code].ok("admin", "POST", "/api/v1/gallery/imports", 202,
                                       json=body)["id"]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks = {code: progress.add_task(f"{code}: gallery import", total=len(persons))
                 for code, persons in GALLERIES.items()}
        waiting = dict(jobs)
        deadline = time.monotonic() + 4 * TIMEOUT_S
        while waiting:
            for code, job_id in list(waiting.items()):
                job = net.apis[code].ok("admin", "GET", f"/api/v1/gallery/imports/{job_id}")
                progress.update(tasks[code], completed=job["done"])
                if job["state"] != "running":
                    del waiting[code]
                    if job["state"] != "done" or job["rejected"] \
                            or job["persons"] != len(GALLERIES[code]):
                        raise DemoError(f"{code}'s gallery import ended {job['state']} with "
                                        f"{job['persons']} persons; rejected: "
                                        f"{job['rejected']}")
                    progress.update(tasks[code], description=f"{code}: {job['persons']} "
                                    f"persons, {job['fingers']} prints enrolled")
            if time.monotonic() > deadline:
                raise DemoError(f"gallery imports not done in time: {', '.join(waiting)}")
            time.sleep(0.2)

    idn = net.apis["IDN"]
    for reference, data in PERSON_DATA.items():
        idn.ok("admin", "PUT", f"/api/v1/gallery/persons/{reference}/data", 204,
               json={"data": data})
        net.hub_needles.append(data["name"])
    idn.ok("supervisor", "POST", f"/api/v1/gallery/persons/{REFUGEE}/protections", 201,
           json={"kind": "refugee", "states": ["AUS"],
                 "reason": "recognised refugee; AUS is the state the person fled"})
    console.print(f"IDN: disclosable data set for {', '.join(PERSON_DATA)}; [bold]{REFUGEE}"
                  "[/] protected by IDN's supervisor as a recognised refugee from [bold]AUS[/]")


def _submit(net: Network, partner: str, agreement: str, **fields: Any) -> dict[str, Any]:
    body = {"partner": partner, "agreement": agreement, "purpose": "border_control",
            "query_type": "fingerprint_1n", **fields}
    return dict(net.apis["AUS"].ok("officer", "POST", "/api/v1/checks", 201, json=body))


def _answered(net: Network, check_id: str) -> dict[str, Any]:
    return net.apis["AUS"].check_in("officer", check_id, ANSWERED, f"check {check_id} answered")


def _hit_text(check: dict[str, Any]) -> str:
    c = check["candidates"][0]
    fmr = f", false match rate {c['fmr']:.1g}" if "fmr" in c else ""
    fmr += f" ({c['fpir']:.1g} over the whole search)" if "fpir" in c else ""
    return f"hit: candidate {c['candidate']}{fmr}"


def _disclose(net: Network, check: dict[str, Any], approve: list[str],
              lines: list[str]) -> dict[str, Any]:
    """Step 2: AUS's officer asks for CATEGORIES; IDN's supervisor approves `approve`."""
    aus, idn = net.apis["AUS"], net.apis["IDN"]
    candidate = check["candidates"][0]["candidate"]
    justification = f"traveller's identity doubtful at the border [{CANARY}]"
    aus.ok("officer", "POST", f"/api/v1/checks/{check['id']}/disclosure-request",
           json={"candidate": candidate, "categories": CATEGORIES,
                 "justification": justification})
    lines.append(f"AUS's officer asks for {', '.join(CATEGORIES)} of {candidate}, saying "
                 f"why: [italic]{escape(justification)}[/]")
    pending = idn.check_in("supervisor", check["id"], {"disclosure_pending"},
                           "the disclosure request arrives")
    reference = pending["candidates"][0].get("reference", "?")
    idn.ok("supervisor", "POST", f"/api/v1/checks/{check['id']}/decision",
           json={"approve": approve, "reason": None if approve == CATEGORIES else
                 "date of birth not needed for this purpose"})
    lines.append(f"IDN's supervisor sees record [bold]{reference}[/] and approves "
                 f"{', '.join(approve)}")
    done = aus.check_in("officer", check["id"], {"disclosed", "disclosure_denied"},
                        "the disclosure arrives")
    shown = ", ".join(f"{k}={v}" for k, v in (done["disclosed"] or {}).items())
    keep = (done["retain_until"] or "")[:10]
    lines.append(f"AUS receives ({done['decision']}): [bold]{escape(shown)}[/], to be "
                 f"deleted by {keep}")
    return done


def _step_hit_and_disclosure(net: Network, prints: Prints) -> None:
    title = "1 · a hit at IDN and its step-2 disclosure"
    check = _submit(net, "IDN", AUS_IDN, fingers=[prints.finger(101, PROBE_IMPRESSION)])
    lines = [f"AUS's officer checks a traveller's right index finger "
             f"({prints.name(101, PROBE_IMPRESSION)}) against IDN's gallery."]
    got = _answered(net, check["id"])
    if got["state"] != "hit":
        step_panel(title, lines, net.record("1 hit + full disclosure", "hit; approved",
                                            got["state"]))
        return
    lines.append(f"IDN's node matched it at once and destroyed the probe: "
                 f"[bold]{_hit_text(got)}[/] (the record id stays at IDN).")
    done = _disclose(net, got, CATEGORIES, lines)
    step_panel(title, lines, net.record("1 hit + full disclosure", "hit; approved",
                                        f"hit; {done['decision']}"))


def _step_no_hit(net: Network, prints: Prints) -> dict[str, Any]:
    title = "2 · a no-hit"
    check = _submit(net, "IDN", AUS_IDN, fingers=[prints.finger(110, PROBE_IMPRESSION)])
    got = _answered(net, check["id"])
    lines = [f"AUS checks a person enrolled in AUS's own gallery "
             f"({prints.name(110, PROBE_IMPRESSION)}) "
             "but unknown to IDN.",
             f"IDN answers [bold]{got['state']}[/], with {len(got['candidates'])} "
             "candidates; the probe was destroyed at IDN when it was matched."]
    step_panel(title, lines, net.record("2 no-hit", "no_hit", got["state"]))
    return got


def _step_partial(net: Network, prints: Prints) -> None:
    title = "3 · a partial disclosure"
    check = _submit(net, "IDN", AUS_IDN, fingers=[prints.finger(103, PROBE_IMPRESSION)])
    lines = [f"AUS checks another traveller ({prints.name(103, PROBE_IMPRESSION)})."]
    got = _answered(net, check["id"])
    if got["state"] != "hit":
        step_panel(title, lines, net.record("3 partial disclosure", "hit; partial",
                                            got["state"]))
        return
    lines.append(f"IDN answers [bold]{_hit_text(got)}[/].")
    done = _disclose(net, got, ["name", "nationality"], lines)
    step_panel(title, lines, net.record("3 partial disclosure", "hit; partial",
                                        f"hit; {done['decision']}"))


ANSWER_FIELDS = ("state", "outcome", "candidates", "error", "decision", "disclosed")


def _step_refugee(net: Network, prints: Prints, no_hit: dict[str, Any]) -> None:
    title = "4 · a refugee's protected record, checked by the state they fled"
    check = _submit(net, "IDN", AUS_IDN, fingers=[prints.finger(102, PROBE_IMPRESSION)])
    got = _answered(net, check["id"])
    table = Table("AUS sees", "2: unknown to IDN", f"4: {REFUGEE}, protected", box=None)
    for name in ANSWER_FIELDS:
        table.add_row(name, json.dumps(no_hit[name]), json.dumps(got[name]))
    entries = net.apis["IDN"].ok("dpo", "GET", "/api/v1/audit",
                                 params={"action": "check.match", "limit": 200})
    withheld = next((x["details"].get("withheld") for x in entries
                     if x["details"].get("check") == check["id"]), None)
    same = all(no_hit[k] == got[k] for k in ANSWER_FIELDS)
    lines = [f"IDN's gallery holds {REFUGEE} ({prints.name(102, 1)}), protected from AUS; "
             f"AUS checks {prints.name(102, PROBE_IMPRESSION)}.",
             "AUS's record of the answer, next to step 2's no-hit:", ""]
    outcome = net.record("4 protected refugee", "no_hit, as step 2",
                         f"{got['state']}, {'as step 2' if same else 'unlike step 2'}")
    step_panel(title, lines, outcome, table, "",
               f"Only IDN's own audit trail records that a protection withheld {withheld} "
               "candidate (GET /api/v1/audit as IDN's dpo).")
    if withheld != 1:
        net.record("4 IDN's audit: withheld", "1", str(withheld))


def _release(net: Network, check_id: str, lines: list[str]) -> None:
    """THA's supervisor releases a request held for review (the agreement says so)."""
    tha = net.apis["THA"]
    held = tha.check_in("supervisor", check_id, {"awaiting_review"}, "held for review")
    tha.ok("supervisor", "POST", f"/api/v1/checks/{check_id}/release")
    lines.append(f"THA holds it for review ({held['query_type']}, purpose "
                 f"{held['purpose']}); THA's supervisor releases it.")


def _step_stolen_passport(net: Network) -> None:
    title = "5 · a stolen passport found by its MRZ"
    tha = net.apis["THA"]
    tha.ok("admin", "POST", "/api/v1/documents", 201,
           json={"document_number": SPECIMEN_NUMBER, "issuing_state": "UTO",
                 "document_type": "P", "status": "stolen", "reference": "THA-POL-0042"})
    mrz = SPECIMEN_MRZ.replace("\n", " / ")
    lines = [f"THA's admin reports passport {SPECIMEN_NUMBER} (UTO) stolen in THA's register.",
             f"AUS's officer checks the passport's MRZ with THA: [dim]{escape(mrz)}[/]"]
    check = _submit(net, "THA", AUS_THA, query_type="document",
                    document={"mrz": SPECIMEN_MRZ})
    _release(net, check["id"], lines)
    got = _answered(net, check["id"])
    theirs = tha.check_in("supervisor", check["id"], {"answered_hit", "answered_no_hit",
                                                      "closed", "refused"}, "answered")
    status = next((c.get("status") for c in theirs["candidates"]), None)
    lines.append(f"AUS gets [bold]{got['state']}[/]; THA's own record of the check says the "
                 f"passport is [bold]{status}[/].")
    step_panel(title, lines, net.record("5 stolen passport (MRZ)", "hit; stolen",
                                        f"{got['state']}; {status}"))


def _step_quota(net: Network, prints: Prints) -> None:
    title = f"6 · the AUS-THA quota ({THA_DAILY_QUOTA} checks a day) running out"
    lines = [f"Step 5 used check 1 of {THA_DAILY_QUOTA} today under {AUS_THA}."]
    second = _submit(net, "THA", AUS_THA, fingers=[prints.finger(107, PROBE_IMPRESSION)])
    lines.append(f"Check 2: AUS checks {prints.name(107, PROBE_IMPRESSION)} with THA.")
    _release(net, second["id"], lines)
    got = _answered(net, second["id"])
    lines.append(f"AUS gets {got['state']}.")
    third = _submit(net, "THA", AUS_THA, fingers=[prints.finger(105, PROBE_IMPRESSION)])
    refused = _answered(net, third["id"])
    error = refused["error"] or {}
    lines.append(f"Check 3: [bold]{refused['state']}[/] — "
                 f"[bold red]{escape(error.get('code', ''))}[/]: "
                 f"{escape(error.get('message', ''))}")
    step_panel(title, lines, net.record("6 quota running out", "hit; refused: quota_exhausted",
                                        f"{got['state']}; {refused['state']}: "
                                        f"{error.get('code', '-')}"))


def _step_audit(net: Network) -> None:
    title = "7 · every audit chain verified against the hub's witness"
    codes = [c for c, _ in MEMBERS]
    # The nodes publish their chain heads every AUDIT_HEAD_EVERY_S (`node serve
    # --audit-head-every`; 60 s by default): wait until the hub witnessed the heads the
    # scenario reached.
    heads = {code: net.apis[code].ok("dpo", "GET", "/api/v1/audit", params={"limit": 1})[0]
             ["seq"] for code in codes}
    witnessed: dict[str, int] = {}
    with console.status("waiting for the hub to witness every node's audit head"):
        for code in codes:
            api, head = net.apis[code], heads[code]

            def fetch(api: Api = api) -> Any:
                return api.ok("dpo", "GET", "/api/v1/audit/verify")

            def reached(v: Any, head: int = head) -> bool:
                return (v["witnessed_up_to"] or 0) >= head

            witnessed[code] = until(f"the hub witnesses {code}'s audit head", fetch,
                                    reached)["witnessed_up_to"]
    table = Table("node", "entries", "witnessed by the hub", "verified by the dpo", box=None)
    intact = {}
    for code in codes:
        v = net.apis[code].ok("dpo", "GET", "/api/v1/audit/verify")
        intact[code] = v["intact"] and v["witnessed"]
        table.add_row(code, str(v["entries"]), f"up to entry {witnessed.get(code, 0)}",
                      "[green]intact[/]" if intact[code] else
                      f"[red]{len(v['problems'])} problem(s)[/]: " +
                      escape("; ".join(p["message"] for p in v["problems"][:3])))
    lines = [f"The nodes publish their chain heads to the hub every {AUDIT_HEAD_EVERY_S} s "
             "(`node serve --audit-head-every`). Each dpo verifies every entry of its node's "
             "chain and the heads the hub witnessed (GET /api/v1/audit/verify).", ""]
    outcome = net.record("7 audit chains", "intact, witnessed",
                         "intact, witnessed" if all(intact.values()) else
                         "broken at " + ", ".join(c for c, ok in intact.items() if not ok))
    step_panel(title, lines, outcome, table)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items()
                for row in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(str(v) for v in value) or "-")]
        return [row for i, v in enumerate(value) for row in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, "-" if value is None else str(value))]


def _counted(counts: dict[str, int]) -> str:
    shown = [f"{k} {v}" for k, v in counts.items() if v]
    return ", ".join(shown) or "none"


def _report_lines(report: dict[str, Any]) -> list[str]:
    """The report's figures to read (`lintas.node.report.Report.as_dict()`)."""
    chain = report["chain"]
    lines = [f"{report['start']} to {report['end']}; audit trail "
             f"{'intact' if chain['intact'] else 'NOT intact'} ({chain['entries']} entries, "
             f"{chain['witnesses']} hub witness(es))"]
    for a in report["agreements"]:
        lines.append(f"[bold]{a['agreement']}[/] with {a['partner']} ({a['status']})")
        for side in a["sides"]:
            verb = "sent" if side["side"] == "requester" else "answered"
            times, quota = side["response_seconds"], side["quota"]
            text = (f"  {side['checks']} checks {verb} ({_counted(side['by_query_type'])}): "
                    f"{_counted(side['outcomes'])}; step 2: {side['disclosure_requests']} "
                    f"asked, {_counted(side['decisions'])}")
            if times["median"] is not None:
                text += f"; answered in {times['median']:.1f} s (median)"
            if quota["daily_quota"] is not None:
                text += f"; busiest day {quota['max_per_day']} of {quota['daily_quota']}"
            if side.get("withheld"):
                text += f"; withheld by a protection: {side['withheld']}"
            lines.append(text)
    return lines


REPORT_PATH = "/api/v1/audit/report"


def _step_report(net: Network) -> None:
    title = f"8 · the data-protection summary (GET {REPORT_PATH}, as each dpo)"
    paths = httpx.get(net.apis["AUS"].url + "/openapi.json", timeout=30).json()["paths"]
    if REPORT_PATH not in paths:
        r = net.apis["AUS"].call("dpo", "GET", REPORT_PATH)
        outcome = net.record("8 data-protection report", "printed", "not served yet",
                             optional=True)
        step_panel(title, [f"[yellow]The nodes do not serve the data-protection report yet[/] "
                           f"({REPORT_PATH} is not in their OpenAPI document): AUS answered "
                           f"HTTP {r.status_code} {escape(error_text(r))}"], outcome)
        return
    parts: list[str] = []
    for code, api in net.apis.items():
        report = api.ok("dpo", "GET", REPORT_PATH)
        (net.work / f"report-{code}.json").write_text(json.dumps(report, indent=2))
        try:
            lines = _report_lines(report)
        except (KeyError, TypeError, ValueError, AttributeError):  # a shape not known here
            lines = [f"{escape(k)}: {escape(v)}" for k, v in _flatten(report)]
        parts += [f"[bold underline]{code}[/]", *lines, ""]
    step_panel(title, parts[:-1], net.record("8 data-protection report", "printed", "printed"))


def _step_hub_store(net: Network) -> None:
    """What the hub holds, read as an attacker with its disk would: metadata only."""
    title = "9 · what the hub holds"
    con = sqlite3.connect(net.hub_db.as_uri() + "?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT type, sender, recipient, COUNT(*), "
                           "SUM(envelope IS NOT NULL) FROM messages "
                           "GROUP BY type, sender, recipient ORDER BY MIN(received_at)").fetchall()
    finally:
        con.close()
    table = Table("type", "from", "to", "envelopes", "payloads held", box=None)
    for kind, sender, recipient, count, held in rows:
        table.add_row(kind, sender, recipient, str(count), str(held))
    files = [p for p in net.hub_db.parent.iterdir() if p.is_file()] + \
        [net.work / "hub.log", net.work / "hub.out"]
    found = sorted({f"{needle!r} in {p.name}" for p in files if p.exists()
                    for needle in net.hub_needles if needle.encode() in p.read_bytes()})
    lines = ["Every envelope the hub relayed, by type: routing metadata, each payload dropped "
             "once the recipient acknowledged it.", ""]
    searched = ", ".join(p.name for p in files if p.exists())
    outcome = net.record("9 hub holds nothing readable", "nothing found",
                         "nothing found" if not found else f"found {len(found)}")
    step_panel(title, lines, outcome, table, "",
               f"The hub's files ({searched}) searched for the canary {CANARY!r} sent in "
               "payloads, the disclosed names and the passport number: " +
               (escape("; ".join(found)) if found else
                "[green]none of them found in the hub's files[/]"))


def _wait_for_interrupt(procs: list[Proc]) -> None:
    """Block until Ctrl-C or SIGTERM, or until one of the servers dies."""
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop and all(p.process.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
