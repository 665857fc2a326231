"""`lintas demo`: a hub and three national nodes as separate processes on loopback.

Everything goes through the same commands an operator would type (`hub init`, `node
init`, `hub member add`, `hub serve`, `node serve`) and the nodes' REST APIs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from lintas.cli.common import console

MEMBERS = (("AUS", "Australia"), ("IDN", "Indonesia"), ("THA", "Thailand"))
CANARY = "CANARY-" + "7f3a9c1e"  # a marker placed in every payload, searched for at the hub
TIMEOUT_S = 60.0


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
    with log.open("wb") as fh:
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
            console.print(f"[bold red]demo failed:[/] {exc}")
            _stop(procs)
            return 1


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


def _play(work: Path, base_port: int, procs: list[Proc], keep_running: bool,
          started: float) -> int:
    console.print(Panel.fit("Lintas demo: one regional hub, three national nodes, sealed "
                            "envelopes.\nEverything runs on 127.0.0.1 as separate processes.",
                            title="lintas demo"))
    env = local_environment(work)
    hub_db = work / "hub" / "hub.db"
    hub_url = f"http://127.0.0.1:{base_port}"
    deadline = time.monotonic() + TIMEOUT_S
    tokens: dict[str, str] = {}
    node_urls: dict[str, str] = {}

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        step = progress.add_task("hub: init (database + signing key)", total=None)
        out = _lintas("hub", "init", "--db", f"sqlite:///{hub_db}", env=env, cwd=work)
        fp = " ".join(out.split("fingerprint:")[1].split())
        progress.update(step, description=f"hub: initialised, key fingerprint {fp}")
        progress.stop_task(step)

        step = progress.add_task("hub: starting on " + hub_url, total=None)
        hub = _start("hub", ["hub", "serve", "--db", f"sqlite:///{hub_db}", "--port",
                             str(base_port), "--log-file", str(work / "hub.log")],
                     hub_url, env, work)
        procs.append(hub)
        _wait_healthy(hub, deadline)
        progress.update(step, description=f"hub: serving on {hub_url}")
        progress.stop_task(step)

        step = progress.add_task("nodes: init, onboard, start", total=len(MEMBERS))
        for i, (code, name) in enumerate(MEMBERS, start=1):
            data = work / code
            _lintas("node", "init", "--member", code, "--hub-url", hub_url,
                    "--hub-fingerprint", fp, "--data-dir", str(data), "--yes", env=env, cwd=work)
            tokens[code] = (data / "api-token").read_text().strip()
            _lintas("hub", "member", "add", code, "--name", name, "--keys",
                    str(data / f"{code}.keys.json"), "--db", f"sqlite:///{hub_db}",
                    env=env, cwd=work)
            url = f"http://127.0.0.1:{base_port + i}"
            node_urls[code] = url
            procs.append(_start(code, ["node", "serve", "--data-dir", str(data), "--port",
                                       str(base_port + i), "--log-file",
                                       str(work / f"{code}.log")], url, env, work))
            progress.advance(step)
        for proc in procs[1:]:
            _wait_healthy(proc, deadline)
        progress.update(step, description="nodes: AUS, IDN, THA onboarded and running")

        pairs = [("AUS", "IDN"), ("IDN", "THA"), ("THA", "AUS"), ("IDN", "AUS")]
        sent: dict[str, tuple[str, str, float]] = {}
        step = progress.add_task("messages: sending pings", total=len(pairs) * 2)
        for sender, recipient in pairs:
            t0 = time.monotonic()
            r = httpx.post(node_urls[sender] + "/api/v1/diagnostics",
                           headers={"Authorization": f"Bearer {tokens[sender]}"},
                           json={"to": recipient, "text": f"hello {recipient} from {sender} "
                                                         f"[{CANARY}]"}, timeout=10)
            if r.status_code != 202:
                raise DemoError(f"{sender} could not queue a ping: {r.text}")
            sent[r.json()["id"]] = (sender, recipient, t0)
        deliveries: list[tuple[str, str, str, str, float]] = []
        seen: set[str] = set()
        progress.update(step, description="messages: waiting for pings and pongs")
        while len(seen) < 2 * len(pairs):
            if time.monotonic() > deadline:
                raise DemoError("not every message arrived in time")
            for code in node_urls:
                r = httpx.get(node_urls[code] + "/api/v1/inbox",
                              headers={"Authorization": f"Bearer {tokens[code]}"}, timeout=10)
                for item in r.json():
                    key = item["id"]
                    origin = item["in_reply_to"] or key
                    if key in seen or origin not in sent:
                        continue
                    seen.add(key)
                    t0 = sent[origin][2]
                    deliveries.append((item["sender"], code, item["type"], item["body"]["text"],
                                       (time.monotonic() - t0) * 1000))
                    progress.advance(step)
            time.sleep(0.05)
        progress.update(step, description="messages: every ping answered by a pong")

    table = Table("from", "to", "type", "decrypted text at the recipient", "ms after send",
                  title="Deliveries (each handled exactly once)")
    for row in deliveries:
        table.add_row(row[0], row[1], row[2], row[3], f"{row[4]:.0f}")
    console.print(table)

    # Store and forward: THA goes offline; the hub holds AUS's envelope until THA is back.
    tha = next(p for p in procs if p.name == "THA")
    _stop([tha])
    procs.remove(tha)
    console.print("\n[bold]THA's node is offline[/]; AUS sends it a ping anyway")
    r = httpx.post(node_urls["AUS"] + "/api/v1/diagnostics",
                   headers={"Authorization": f"Bearer {tokens['AUS']}"},
                   json={"to": "THA", "text": f"are you there? [{CANARY}]"}, timeout=10)
    held_id = r.json()["id"]
    while _outbox_status("AUS", held_id, node_urls, tokens) != "sent":
        if time.monotonic() > deadline:
            raise DemoError("the hub did not accept AUS's envelope in time")
        time.sleep(0.05)
    _show_held_envelope(hub_db, held_id)
    procs.append(_start("THA", ["node", "serve", "--data-dir", str(work / "THA"), "--port",
                                str(base_port + 3), "--log-file", str(work / "THA.log")],
                        tha.url, env, work))
    _wait_healthy(procs[-1], deadline)
    while True:
        r = httpx.get(node_urls["THA"] + "/api/v1/inbox",
                      headers={"Authorization": f"Bearer {tokens['THA']}"}, timeout=10)
        got = [m for m in r.json() if m["id"] == held_id]
        if got:
            console.print(f"THA is back and received it: [italic]{got[0]['body']['text']}[/]")
            break
        if time.monotonic() > deadline:
            raise DemoError("THA did not receive the held envelope in time")
        time.sleep(0.05)
    _show_hub_store(hub_db, work)

    if keep_running:
        console.print(Panel("\n".join(
            [f"hub  {hub_url}/docs"] +
            [f"{c}  {u}/docs  (API token {tokens[c]})" for c, u in node_urls.items()] +
            [f"files: {work}", "press Ctrl-C to stop them"]), title="servers running"))
        _wait_for_interrupt(procs)
        _stop(procs)
        console.print("[green]all processes stopped cleanly[/]")
        return 0
    _stop(procs)
    console.print(f"[green]all processes stopped cleanly[/] in "
                  f"{time.monotonic() - started:.1f}s total")
    return 0


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


def _outbox_status(code: str, msg_id: str, urls: dict[str, str], tokens: dict[str, str]) -> str:
    r = httpx.get(urls[code] + "/api/v1/outbox",
                  headers={"Authorization": f"Bearer {tokens[code]}"}, timeout=10)
    return next((m["status"] for m in r.json() if m["id"] == msg_id), "unknown")


def _show_held_envelope(hub_db: Path, msg_id: str) -> None:
    """What the hub holds for an offline recipient: routing metadata and ciphertext."""
    import base64
    import json
    import sqlite3

    con = sqlite3.connect(hub_db)
    try:
        (envelope,) = con.execute("SELECT envelope FROM messages WHERE id = ?",
                                  (msg_id,)).fetchone()
    finally:
        con.close()
    seg = envelope.split(".")[1]
    routing = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    jwe = routing.pop("payload")
    if CANARY in envelope:
        raise DemoError("the canary is readable in the hub's stored envelope")
    lines = [f"{k}: {v}" for k, v in routing.items()]
    lines.append(f"payload (JWE for THA only, {len(jwe)} bytes): {jwe[:48]}…")
    console.print(Panel("\n".join(lines), title="the envelope as the hub stores it "
                        f"({len(envelope)} bytes)", subtitle="no readable payload"))


def _show_hub_store(hub_db: Path, work: Path) -> None:
    """Read the hub's database as an attacker with its disk would: no payload in clear."""
    import sqlite3

    con = sqlite3.connect(hub_db)
    try:
        rows = con.execute("SELECT id, sender, recipient, type, size, "
                           "substr(envelope, 1, 40), acked_at IS NOT NULL FROM messages "
                           "ORDER BY received_at").fetchall()
    finally:
        con.close()
    table = Table("id", "from", "to", "type", "bytes", "stored envelope", "acked",
                  title="What the hub holds (metadata; payloads dropped on acknowledgement)")
    for r in rows:
        table.add_row(r[0][:8] + "…", r[1], r[2], r[3], str(r[4]),
                      (r[5] + "…") if r[5] else "[dim]purged[/]", "yes" if r[6] else "no")
    console.print(table)
    files = [p for p in hub_db.parent.iterdir() if p.is_file()] + [work / "hub.log"]
    leaked = [p.name for p in files if p.exists() and CANARY.encode() in p.read_bytes()]
    if leaked:
        raise DemoError(f"the canary was found in the hub's files: {leaked}")
    console.print(f"[green]canary {CANARY!r} found in none of the hub's files[/] "
                  f"({', '.join(p.name for p in files if p.exists())})")
