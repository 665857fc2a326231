"""Shared fixtures: databases on SQLite and PostgreSQL, real servers on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from lintas.crypto import KeyPair, keys
from lintas.hub import hub_database, registry
from lintas.hub.app import create_app
from lintas.hub.relay import Relay
from lintas.node import node_database
from lintas.node.hub_client import HubClient
from lintas.node.runtime import Node, init_node
from lintas.protocol.keyfile import parse_member_keys
from lintas.storage import Database

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery staple"

# Sealing a private key derives its wrapping key with PBKDF2 (keys.PBES2_ITERATIONS,
# 210,000 rounds, about 0.12 s here), and every hub and node a test sets up seals and
# unseals several keys: thousands of derivations over the suite. Keys sealed inside the
# test process use far fewer rounds; the count travels in each sealed key's header, so
# servers and CLI runs in other processes (which keep the real setting) read them all
# the same. tests/crypto/test_keys.py checks the real setting.
REAL_PBES2_ITERATIONS = keys.PBES2_ITERATIONS
TEST_PBES2_ITERATIONS = 1_000


@pytest.fixture(autouse=True, scope="session")
def _fast_key_sealing() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(keys, "PBES2_ITERATIONS", TEST_PBES2_ITERATIONS)
    yield
    patch.undo()


PG_ADMIN = os.environ.get("LINTAS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_ok() -> bool:
    ok = _pg_available()
    if not ok and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI and is not reachable at {PG_ADMIN}")
    return ok


@pytest.fixture
def new_db_url(tmp_path: Path, pg_ok: bool) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh, empty database URL on the given backend."""
    import psycopg

    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        if not pg_ok:
            pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN} (CI is unset)")
        name = f"lintas_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        base = PG_ADMIN.rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield make
    if created:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServerThread:
    """A real uvicorn server on 127.0.0.1, on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                   timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class HubFixture:
    url: str
    db: Database
    key: KeyPair
    relay: Relay
    nodes: dict[str, Node] = field(default_factory=dict)

    def client(self, node: Node | None = None) -> HubClient:
        if node is None:
            return HubClient(self.url)
        return HubClient(self.url, node.member, node.signing_key())


NAMES = {"AUS": "Australia", "IDN": "Indonesia", "THA": "Thailand", "MYS": "Malaysia",
         "IOM": "International Organization for Migration"}


def refresh_all(hub: HubFixture) -> None:
    client = hub.client()
    try:
        for node in hub.nodes.values():
            node.refresh_directory(client)
    finally:
        client.close()


@pytest.fixture(scope="session")
def fvc2004() -> Path:
    """The shared public fingerprint data (FVC2004), found through LINTAS_DATA."""
    root = Path(os.environ.get("LINTAS_DATA", REPO.parent / "shared" / "data")) / "fvc2004"
    if not (root / "DB1_B" / "101_1.tif").exists():
        if os.environ.get("CI"):
            pytest.fail(f"FVC2004 data is required under CI and missing at {root}")
        pytest.skip(f"FVC2004 data not found at {root} (set LINTAS_DATA)")
    return root


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hub(backend: str, new_db_url: Callable[[str], str]) -> Iterator[HubFixture]:
    db = hub_database(new_db_url(backend))
    db.upgrade()
    key = registry.init_hub_key(db, PASSPHRASE)
    with ServerThread(create_app(db, key, max_envelope_bytes=64 * 1024)) as server:
        yield HubFixture(server.url, db, key, Relay(db, 64 * 1024))
    db.dispose()


@pytest.fixture
def make_node(hub: HubFixture, backend: str,
              new_db_url: Callable[[str], str]) -> Callable[..., Node]:
    """Factory: a node initialised against `hub`, onboarded, with a fresh directory."""

    def make(code: str, onboard: bool = True) -> Node:
        db = node_database(new_db_url(backend))
        db.upgrade()
        result = init_node(db, code, hub.url, hub.key.public_jwk(), PASSPHRASE)
        if onboard:
            registry.add_member(hub.db, parse_member_keys(result.public_keys), NAMES[code],
                                organisation=code == "IOM")
        node = Node(db, PASSPHRASE)
        node.api_token = result.api_token  # type: ignore[attr-defined]
        hub.nodes[code] = node
        refresh_all(hub)
        return node

    return make
