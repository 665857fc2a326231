"""Whole-system tests: hub and nodes as separate OS processes on loopback.

These are the guarantees of the backbone: every message is delivered exactly once
through crashes and restarts, two hub processes share one PostgreSQL database safely,
and no payload text ever reaches the hub's disk or logs.
"""

from __future__ import annotations

import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lintas.cli.demo import Proc, _lintas, _start, _stop, _wait_healthy, local_environment
from lintas.node import node_database
from lintas.node.hub_client import HubClient
from lintas.node.runtime import Node
from lintas.protocol.envelope import RoutingHeader, seal
from lintas.storage import utcnow

pytestmark = pytest.mark.slow

CANARY = "CANARY-fed-" + secrets.token_hex(6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Federation:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = local_environment(work)
        self.procs: dict[str, Proc] = {}
        self.tokens: dict[str, str] = {}
        self.hub_db = ""
        self.fingerprint = ""

    def run(self, *args: str) -> str:
        return _lintas(*args, env=self.env, cwd=self.work)

    def init_hub(self, db_url: str) -> None:
        self.hub_db = db_url
        out = self.run("hub", "init", "--db", db_url)
        self.fingerprint = " ".join(out.split("fingerprint:")[1].split())

    def start_hub(self, name: str, port: int) -> Proc:
        proc = _start(name, ["hub", "serve", "--db", self.hub_db, "--port", str(port),
                             "--log-file", str(self.work / f"{name}.log")],
                      f"http://127.0.0.1:{port}", self.env, self.work)
        self.procs[name] = proc
        _wait_healthy(proc, time.monotonic() + 30)
        return proc

    def init_node(self, code: str, hub_url: str) -> Path:
        data = self.work / code
        self.run("node", "init", "--member", code, "--hub-url", hub_url, "--hub-fingerprint",
                 self.fingerprint, "--data-dir", str(data), "--yes")
        self.run("hub", "member", "add", code, "--name", code, "--keys",
                 str(data / f"{code}.keys.json"), "--db", self.hub_db)
        self.tokens[code] = (data / "api-token").read_text().strip()
        return data

    def start_node(self, code: str, port: int) -> Proc:
        proc = _start(code, ["node", "serve", "--data-dir", str(self.work / code), "--port",
                             str(port), "--log-file", str(self.work / f"{code}.log")],
                      f"http://127.0.0.1:{port}", self.env, self.work)
        self.procs[code] = proc
        _wait_healthy(proc, time.monotonic() + 30)
        return proc

    def api(self, code: str, method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(method, self.procs[code].url + path, timeout=10,
                             headers={"Authorization": f"Bearer {self.tokens[code]}"}, **kw)

    def kill(self, name: str) -> None:
        proc = self.procs[name].process
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path)
    yield fed
    _stop(list(fed.procs.values()))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_crashes_and_restarts_deliver_every_message_exactly_once(federation: Federation) -> None:
    fed = federation
    hub_port, aus_port, idn_port = free_port(), free_port(), free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    fed.init_hub(f"sqlite:///{fed.work / 'hub' / 'hub.db'}")
    fed.start_hub("hub", hub_port)
    fed.init_node("AUS", hub_url)
    fed.init_node("IDN", hub_url)
    fed.start_node("AUS", aus_port)
    fed.start_node("IDN", idn_port)

    n = 40
    queued = []
    for i in range(n):
        r = fed.api("AUS", "POST", "/api/v1/diagnostics",
                    json={"to": "IDN", "text": f"message {i} {CANARY}"})
        assert r.status_code == 202, r.text
        queued.append(r.json()["id"])
        if i == 10:
            fed.kill("IDN")  # the recipient dies with messages in flight
        if i == 25:
            fed.kill("hub")  # the hub dies too; AUS keeps queueing durably
    fed.kill("AUS")  # and the sender, with its outbox partly sent
    fed.start_hub("hub", hub_port)
    fed.start_node("IDN", idn_port)
    fed.start_node("AUS", aus_port)

    def inbox(code: str) -> list[dict]:
        return fed.api(code, "GET", "/api/v1/inbox", params={"limit": 1000}).json()

    wait_until(lambda: len(inbox("AUS")) >= n, 120, "every pong back at AUS")
    time.sleep(1.0)  # let any duplicate that was going to appear, appear
    pings, pongs = inbox("IDN"), inbox("AUS")
    assert sorted(m["id"] for m in pings) == sorted(queued)
    assert len(pongs) == n and sorted(m["in_reply_to"] for m in pongs) == sorted(queued)
    outbox = fed.api("AUS", "GET", "/api/v1/outbox", params={"limit": 1000}).json()
    assert {m["status"] for m in outbox} == {"sent"}

    # The canary travelled in every payload; the hub's disk and logs never saw it: look
    # while the hub runs (its WAL is live) and again after it has stopped.
    def hub_files() -> list[Path]:
        files = [p for p in (fed.work / "hub").iterdir() if p.is_file()]
        return [*files, fed.work / "hub.log", fed.work / "hub.out"]

    running = hub_files()
    assert any(p.name == "hub.db-wal" for p in running)
    _stop([fed.procs["hub"]])
    for path in running + hub_files():
        if path.exists():
            assert CANARY.encode() not in path.read_bytes(), f"canary found in {path.name}"
    assert b"accepted id=" in (fed.work / "hub.log").read_bytes()  # metadata is logged
    # ...while the nodes, which may read the payloads, did store it.
    assert any(CANARY.encode() in p.read_bytes() for p in (fed.work / "IDN").glob("node.db*"))


def test_two_hub_processes_on_one_postgresql_deliver_exactly_once(
    federation: Federation, new_db_url: Callable[[str], str], tmp_path: Path
) -> None:
    fed = federation
    fed.init_hub(new_db_url("postgresql"))
    h1 = fed.start_hub("hub1", free_port())
    h2 = fed.start_hub("hub2", free_port())
    nodes: dict[str, Node] = {}
    for code in ("AUS", "IDN"):
        data = fed.init_node(code, h1.url)
        db = node_database(f"sqlite:///{data / 'node.db'}")
        nodes[code] = Node(db, (fed.work / "node.pass").read_text())
    aus, idn = nodes["AUS"], nodes["IDN"]
    with HubClient(h1.url) as c:
        aus.refresh_directory(c)
        idn.refresh_directory(c)

    n = 60
    sent = []
    clients = [HubClient(h.url, "AUS", aus.signing_key()) for h in (h1, h2)]
    enc = aus.directory().members["IDN"].current_encryption_key(utcnow())
    assert enc is not None
    for i in range(n):
        header = RoutingHeader.new("diagnostic.pong", "AUS", "IDN", utcnow())
        clients[i % 2].submit(seal(header, {"text": f"{i}"}, aus.signing_key(), enc.public()))
        sent.append(header.id)
    for c in clients:
        c.close()

    # IDN polls both hub processes at once, as behind a load balancer.
    errors: list[BaseException] = []

    def poller(url: str) -> None:
        try:
            with HubClient(url, "IDN", idn.signing_key()) as c:
                while len(idn.inbox(limit=1000)) < n:
                    idn.poll(c, wait=1, limit=7)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=poller, args=(h.url,)) for h in (h1, h2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(m.id for m in idn.inbox(limit=1000)) == sorted(sent)

    import psycopg

    url = fed.hub_db.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT delivery_count, envelope IS NULL, acked_at IS NOT NULL "
                            "FROM messages").fetchall()
    assert len(rows) == n
    assert all(r == (1, True, True) for r in rows), "an envelope was handed out twice"
