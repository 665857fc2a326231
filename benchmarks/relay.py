"""Relay benchmark: a hub and two nodes (AUS, IDN) as separate processes on loopback.

    .venv/bin/python benchmarks/relay.py [--envelopes 1000] [--json FILE] [--base-port 8600]
                                         [--rate PER_S] [--pongs]

N one-way diagnostic envelopes (pings with "reply": false) are queued at AUS through its
REST API by several concurrent keep-alive clients and counted when they appear in IDN's
inbox. With --pongs, IDN answers every ping (2N envelopes relayed; only the pings are
timed). By default pings are queued as fast as the API accepts them (saturation);
--rate offers a steady load instead. The CPU each process spent per envelope is printed
too, to show where the time goes.

Set-up reuses the helpers of `lintas demo` (the same CLI commands an operator types).
Everything lives in a temporary directory (SQLite databases, passphrase files, logs)
that is removed afterwards; the processes are always stopped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from lintas.cli.demo import (
    DemoError,
    Proc,
    _lintas,
    _start,
    _stop,
    _wait_healthy,
    local_environment,
)

HOST = "127.0.0.1"  # loopback only, for every process and every request
SENDER, RECIPIENT = "AUS", "IDN"
MEMBERS = ((SENDER, "Australia"), (RECIPIENT, "Indonesia"))
OVERALL_TIMEOUT_S = 300.0
CLIENTS = 8  # concurrent HTTP clients posting pings to AUS
INBOX_LIMIT = 1000  # the API's maximum page; the newest entries come first
POLL_EVERY_S = 0.25
POLL_MARGIN = 20
PONGS = False  # set by --pongs: IDN answers each ping, doubling the envelopes relayed


def progress(message: str) -> None:
    print(f"[relay-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise DemoError(f"overall timeout reached while {what}")

    def expire(self) -> None:
        """Make every later check fail: stops the posting threads early."""
        self.at = -math.inf


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# --- set-up -------------------------------------------------------------------------


def start_network(work: Path, base_port: int, procs: list[Proc],
                  deadline: Deadline) -> dict[str, tuple[str, str]]:
    """Initialise and start the hub and both nodes; returns {member: (url, API token)}."""
    env = local_environment(work)
    hub_db = f"sqlite:///{work / 'hub' / 'hub.db'}"
    hub_url = f"http://{HOST}:{base_port}"

    progress("hub: init")
    out = _lintas("hub", "init", "--db", hub_db, env=env, cwd=work)
    fp = " ".join(out.split("fingerprint:")[1].split())
    hub = _start("hub", ["hub", "serve", "--db", hub_db, "--host", HOST, "--port",
                         str(base_port), "--log-file", str(work / "hub.log")], hub_url, env, work)
    procs.append(hub)
    _wait_healthy(hub, deadline.at)
    progress(f"hub: serving on {hub_url}")

    nodes: dict[str, tuple[str, str]] = {}
    for i, (code, name) in enumerate(MEMBERS, start=1):
        data = work / code
        _lintas("node", "init", "--member", code, "--hub-url", hub_url, "--hub-fingerprint", fp,
                "--data-dir", str(data), "--yes", env=env, cwd=work)
        _lintas("hub", "member", "add", code, "--name", name, "--keys",
                str(data / f"{code}.keys.json"), "--db", hub_db, env=env, cwd=work)
        nodes[code] = (f"http://{HOST}:{base_port + i}",
                       (data / "api-token").read_text().strip())
        progress(f"{code}: initialised and onboarded")
    # Both members are in the directory before either node starts, so each node's first
    # directory fetch already lists the other.
    for i, (code, _) in enumerate(MEMBERS, start=1):
        procs.append(_start(code, ["node", "serve", "--data-dir", str(work / code), "--host",
                                   HOST, "--port", str(base_port + i), "--log-file",
                                   str(work / f"{code}.log")], nodes[code][0], env, work))
    for proc in procs[1:]:
        _wait_healthy(proc, deadline.at)
        # /health answers 200 even while "degraded": wait for the first contact with the hub.
        while httpx.get(proc.url + "/health", timeout=5).json()["status"] != "ok":
            deadline.check(f"waiting for {proc.name} to reach the hub")
            time.sleep(0.1)
        progress(f"{proc.name}: serving on {proc.url}, in contact with the hub")
    return nodes


# --- measurement --------------------------------------------------------------------


class InboxWatcher:
    """Collects the `received` time of our pings from the recipient's inbox."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30,
                                   headers={"Authorization": f"Bearer {token}"})
        self.received: dict[str, datetime] = {}

    def poll(self, wanted: dict[str, Any]) -> int:
        # The inbox lists the newest first and, in this set-up, holds only our pings, so
        # whatever arrived since the last poll is among the newest `outstanding` entries.
        # Asking for just those (plus a margin) keeps the watcher from loading IDN: a page
        # of 1000 entries costs IDN ~0.1 s of CPU. For N > 1000 this relies on fewer than
        # 1000 pings arriving between two polls (POLL_EVERY_S apart).
        outstanding = len(wanted.keys() - self.received.keys())
        limit = min(INBOX_LIMIT, outstanding + POLL_MARGIN)
        r = self.client.get("/api/v1/inbox", params={"limit": limit})
        r.raise_for_status()
        for item in r.json():
            if item["id"] in wanted and item["id"] not in self.received:
                self.received[item["id"]] = datetime.fromisoformat(item["received"])
        return len(self.received)

    def close(self) -> None:
        self.client.close()


def post_pings(url: str, token: str, count: int, rate: float, deadline: Deadline,
               queued: dict[str, float], tag: str) -> None:
    """Queue `count` pings at the sender, recording for each id when it was queued.

    Timing choice: a ping's queue time is our own wall clock (time.time()) just before its
    POST, and its arrival time is the `received` field of the recipient's inbox, i.e.
    datetime.now(UTC) in the IDN process at its commit. Both read the same system clock
    (CLOCK_REALTIME, UTC) on this one machine, so they are directly comparable. The
    server-side `created` of the envelope cannot be used: the routing header truncates it
    to whole seconds. Taking the time before the POST (rather than after its 202) counts
    the API's own work (sealing, signing, the outbox commit) as part of the latency, as a
    caller of the API experiences it.
    """
    lock = threading.Lock()
    local = threading.local()
    start = time.monotonic()
    clients: list[http.client.HTTPConnection] = []
    parsed = urlsplit(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> http.client.HTTPConnection:
        # The standard library's keep-alive connection: a load generator that spends as
        # little as possible of the two cores it shares with the system under test.
        if not hasattr(local, "client"):
            local.client = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
            with lock:
                clients.append(local.client)
        return local.client  # type: ignore[no-any-return]

    def one(i: int) -> None:
        if rate > 0:  # open loop: ping i is due at start + i/rate
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        deadline.check("queueing pings")
        body = json.dumps({"to": RECIPIENT, "text": f"{tag} ping {i}", "reply": PONGS})
        t0 = time.time()
        conn = client()
        conn.request("POST", "/api/v1/diagnostics", body=body, headers=headers)
        r = conn.getresponse()
        answer = r.read()
        if r.status != 202:
            raise DemoError(f"{SENDER} refused ping {i}: HTTP {r.status} {answer[:200]!r}")
        with lock:
            queued[json.loads(answer)["id"]] = t0
            if len(queued) % 200 == 0:
                progress(f"queued {len(queued)}/{count} pings at {SENDER}")

    try:
        with ThreadPoolExecutor(CLIENTS, thread_name_prefix="poster") as pool:
            futures = [pool.submit(one, i) for i in range(count)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        for c in clients:
            c.close()


def run(envelopes: int, base_port: int, rate: float) -> dict[str, Any]:
    deadline = Deadline(OVERALL_TIMEOUT_S)
    work = Path(tempfile.mkdtemp(prefix="lintas-bench-"))
    procs: list[Proc] = []
    try:
        nodes = start_network(work, base_port, procs, deadline)
        (aus_url, aus_token), (idn_url, idn_token) = nodes[SENDER], nodes[RECIPIENT]
        watcher = InboxWatcher(idn_url, idn_token)
        try:
            # One warm-up ping, not measured: first-use costs (imports, connections).
            warm: dict[str, float] = {}
            post_pings(aus_url, aus_token, 1, 0, deadline, warm, "warm-up")
            while watcher.poll(warm) < 1:
                deadline.check("waiting for the warm-up ping")
                time.sleep(0.05)
            watcher.received.clear()
            progress("warm-up ping delivered; starting the measurement")
            cpu_before = {p.name: cpu_seconds(p.process.pid) for p in procs}
            cpu_before["client"] = time.process_time()

            queued: dict[str, float] = {}
            with ThreadPoolExecutor(1, thread_name_prefix="sender") as background:
                sending = background.submit(post_pings, aus_url, aus_token, envelopes, rate,
                                            deadline, queued, "bench")
                last_report = 0
                try:
                    while True:
                        time.sleep(POLL_EVERY_S)
                        if sending.done() and sending.exception() is not None:
                            sending.result()  # re-raises the sender's error here
                        # A snapshot of the ids queued so far; later ones are picked up by a
                        # later poll (the inbox keeps every message it handled).
                        arrived = watcher.poll(dict(queued))
                        if arrived - last_report >= 100:
                            progress(f"{arrived}/{envelopes} pings arrived at {RECIPIENT}")
                            last_report = arrived
                        if sending.done() and arrived >= envelopes:
                            break
                        deadline.check(f"waiting for pings at {RECIPIENT} ({arrived}/{envelopes})")
                except BaseException:
                    deadline.expire()
                    raise
        finally:
            watcher.close()

        cpu_after = {p.name: cpu_seconds(p.process.pid) for p in procs}
        cpu_after["client"] = time.process_time()
        first_queued = min(queued.values())
        last_arrival = max(t.timestamp() for t in watcher.received.values())
        seconds = last_arrival - first_queued
        latencies = [(watcher.received[i].timestamp() - t0) * 1000 for i, t0 in queued.items()]
        return {
            "envelopes": envelopes,
            "seconds": seconds,
            "queue_seconds": max(queued.values()) - first_queued,
            "throughput_per_s": envelopes / seconds,
            "cpu_ms_per_envelope": {k: (cpu_after[k] - cpu_before[k]) * 1000 / envelopes
                                    for k in cpu_after},
            "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                           "p99": percentile(latencies, 99), "max": max(latencies)},
        }
    except BaseException:
        for proc in procs:
            if proc.log.exists():
                print(f"--- last lines of {proc.name}'s output ---\n"
                      f"{proc.log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
        raise
    finally:
        _stop(procs)
        shutil.rmtree(work, ignore_errors=True)
        progress("processes stopped, temporary directory removed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envelopes", type=int, default=1000,
                        help="envelopes to send (default 1000)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the key figures here")
    parser.add_argument("--base-port", type=int, default=8600,
                        help="hub port; the nodes use the next two (default 8600)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="queue at most this many pings per second (default 0: as fast "
                             "as the API accepts them)")
    parser.add_argument("--pongs", action="store_true",
                        help="let IDN answer every ping with a pong (2N envelopes relayed, "
                             "only the pings timed); default: N one-way envelopes")
    args = parser.parse_args(argv)
    global PONGS
    PONGS = args.pongs
    if args.envelopes < 1:
        parser.error("--envelopes must be at least 1")
    try:
        result = run(args.envelopes, args.base_port, args.rate)
    except (DemoError, httpx.HTTPError) as exc:
        progress(f"benchmark failed: {exc}")
        return 1
    lat = result["latency_ms"]
    print(f"envelopes          {result['envelopes']} ({SENDER} -> {RECIPIENT}, diagnostic pings)")
    print(f"seconds            {result['seconds']:.2f} (first queued -> last arrived; "
          f"queueing took {result['queue_seconds']:.2f})")
    print(f"throughput_per_s   {result['throughput_per_s']:.1f}")
    print(f"latency p50 ms     {lat['p50']:.1f}")
    print(f"latency p99 ms     {lat['p99']:.1f}  (p90 {lat['p90']:.1f}, max {lat['max']:.1f})")
    print(f"cpu_count          {os.cpu_count()}")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_envelope"].items())
    print(f"cpu ms/envelope    {cpu}")
    if args.json:
        args.json.write_text(json.dumps({
            "envelopes": result["envelopes"],
            "throughput_per_s": round(result["throughput_per_s"], 2),
            "latency_ms": {"p50": round(lat["p50"], 2), "p99": round(lat["p99"], 2)},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
