"""Check benchmark: end-to-end latency of a fingerprint check, requester to responder and back.

    .venv/bin/python benchmarks/check.py [--gallery 100000] [--checks 200] [--concurrency 4]
        [--backend sqlite|postgresql] [--data DIR] [--json FILE] [--keep]

A hub and two nodes, AUS (requester) and IDN (responder), run as separate processes on
127.0.0.1, set up with the commands an operator types (`lintas hub init/serve`, `lintas
node init/serve`, `lintas hub member add`, `lintas user add`), as `lintas demo` does. AUS
proposes an agreement to IDN (fingerprint_1n, border_control, automatic answers, quotas
far above the run) and IDN countersigns it, both through the nodes' REST APIs.

IDN's gallery is filled BEFORE its server starts, so the node builds its 1:N index at
start-up as it would in production; the start-up (process start -> /health answering,
index build included) is timed. The gallery holds --gallery fingers, --fingers of them a
person (default one: position 2, the right index, so that every probe is searched
against all of them, the hardest case for a one-finger probe; with --fingers 2 also
position 3, the right middle finger, and so on). FVC2004 holds one finger a person, so
with --fingers K the real persons are K consecutive fingers of one database, enrolled
and probed together as one person's fingers:
- REAL: the first usable impression of each "mated" FVC2004 finger (every finger of the
  databases used except the last --held-out of each), enrolled through `Gallery.enrol`
  as ISO/IEC 19794-2:2011 templates extracted with the node's own MINDTCT extraction
  (the four grid phases, as views 0-3, as the node stores an enrolled image);
- SYNTHETIC: every other finger, made from the real templates just enrolled (never from
  a probe's impression) by `benchmarks/fingerprint.py`'s `synthetic_finger` (mirrored,
  smoothly warped, 15 % minutiae dropped: new fingers with realistic minutiae layouts;
  until 2026-12-06 half were unmirrored, copies of the enrolled fingers themselves) and
  inserted in bulk as valid ISO records with the same columns the gallery writes (a
  sample is read back through `Gallery.iter_templates`; the responder's index build
  reads them all).
The held-out fingers are neither in the gallery nor a source of synthetic fingers.

Probes are REAL impressions, submitted by an officer through AUS's REST API
(POST /api/v1/checks): mated probes are other impressions of the enrolled real fingers,
non-mated probes impressions of the held-out fingers (--mated-share of each); a probe of
several fingers sends impression n of each of the person's fingers.
Most probes are ISO/IEC 19794-2:2011 templates (what a border system with its own
extractor sends); --image-share of them are the TIFF images themselves, which AUS
quality-checks (NFIQ 2) and extracts before sending, so they cost more. A check is timed
from just before its POST to the moment GET /api/v1/checks/{id} shows it answered (hit,
no_hit or refused): a long poll (`?changed_from=STATE&wait=30`, answered as soon as the
state changes), or with --poll-ms N a plain GET every N ms, as a client without long
polls would do. --warmup checks go first and are not
counted; then --checks checks run with --concurrency of them in flight.

Reported: latency p50/p99/max (all counted checks, and per probe kind), sustained checks
per second (counted checks / first submit -> last answer), hit rate of mated probes (and
whether the true mate is the first candidate, from IDN's own view of the check), false
hits of non-mated probes, where the time goes (median of each stage, from the two nodes'
timestamps), CPU seconds per check of each process, the gallery build time and the
responder's start-up time.

Progress goes to stderr, the table to stdout. Everything lives in a temporary directory
(and, with --backend postgresql, in fresh databases) removed afterwards unless --keep;
the processes are always stopped.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import itertools
import json
import os
import queue
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import fingerprint
import httpx
import numpy as np
import relay
from sqlalchemy import func, insert, select

from lintas.biometrics import formats, matching
from lintas.biometrics.extraction import extract_phases
from lintas.biometrics.images import ImageError, load_image
from lintas.biometrics.minutiae import FingerView, Minutia, MinutiaeTemplate, MinutiaType
from lintas.biometrics.quality import QualityPolicy, nfiq2
from lintas.cli.demo import (
    DemoError,
    Proc,
    _lintas,
    _start,
    _stop,
    _wait_healthy,
    local_environment,
    until,
)
from lintas.node import node_database
from lintas.node.gallery import MIN_MINUTIAE, Gallery
from lintas.node.models import GalleryFinger, GalleryPerson
from lintas.policy import Agreement
from lintas.policy.agreements import MAX_QUOTA, Direction
from lintas.storage import Database, utcnow

HOST = "127.0.0.1"  # loopback only, for every process and every request
REQUESTER, RESPONDER = "AUS", "IDN"
MEMBERS = ((REQUESTER, "Australia"), (RESPONDER, "Indonesia"))
AGREEMENT_ID = "AUS-IDN-BENCH-01"
PURPOSE, QUERY_TYPE = "border_control", "fingerprint_1n"
POSITIONS = (2, 3, 4, 5)  # the fingers of a person, by --fingers: right index, middle, ...
POSITION = POSITIONS[0]
ANSWERED = ("hit", "no_hit", "refused")
FAILED = ("cancelled", "expired")
MAX_CANDIDATES = 3
DEFAULT_PPI = {"DB3_B": 512.0}  # the shared FVC2004 sets: DB3_B is 512 ppi, the others 500
PG_ADMIN = os.environ.get("LINTAS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 5000  # synthetic fingers generated and inserted at a time
MARGIN = 16  # px around a synthetic finger's minutiae
CHECK_TIMEOUT_S = 120.0
SETUP_TIMEOUT_S = 300.0


class BenchError(Exception):
    pass


def progress(message: str) -> None:
    print(f"[check-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- fingerprints -------------------------------------------------------------------


@dataclass
class Impression:
    database: str
    finger: str  # e.g. "101"
    number: int
    path: Path
    ppi: float
    record: bytes | None = None  # ISO/IEC 19794-2:2011, None: failed to extract / too few

    @property
    def name(self) -> str:
        return f"{self.database}/{self.finger}_{self.number}"


@dataclass
class RealFinger:
    database: str
    finger: str
    mated: bool
    impressions: list[Impression] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"fvc2004-{self.database}-{self.finger}"

    def usable(self) -> list[Impression]:
        return [imp for imp in self.impressions if imp.record is not None]


@dataclass
class RealPerson:
    """--fingers real fingers of one database enrolled as one person, at POSITIONS."""

    fingers: list[RealFinger]

    @property
    def mated(self) -> bool:
        return self.fingers[0].mated

    @property
    def reference(self) -> str:
        first = self.fingers[0]
        return "+".join([first.reference, *(f.finger for f in self.fingers[1:])])

    def enrolled(self) -> list[Impression]:
        """The impression enrolled of each finger: its first usable one."""
        return [f.usable()[0] for f in self.fingers]

    def probes(self, mated: bool) -> list[list[Impression]]:
        """Each impression number every finger has (usable, for a mated person, and not
        the one enrolled): the fingers of one probe, in position order."""
        numbers = [{imp.number: imp for imp in (f.usable()[1:] if mated else f.impressions)}
                   for f in self.fingers]
        common = sorted(set.intersection(*(set(n) for n in numbers)))
        return [[n[number] for n in numbers] for number in common]


def at_position(record: bytes, position: int) -> bytes:
    """An ISO/IEC 19794-2:2011 record of POSITION's extraction, as the finger at
    `position` (the node refuses minutiae labelled as another finger)."""
    if position == POSITION:
        return record
    template = formats.read(record, formats.ISO_2011)
    views = tuple(dataclasses.replace(view, position=position) for view in template.views)
    return formats.write(dataclasses.replace(template, views=views), formats.ISO_2011)


def group_persons(fingers: list[RealFinger], per_person: int) -> list[RealPerson]:
    """Consecutive fingers of one database and kind (mated or held out) as persons of
    `per_person` fingers; a remainder too small for a person is left out. With one finger
    a person, every finger is a person."""
    persons: list[RealPerson] = []
    groups: dict[tuple[str, bool], list[RealFinger]] = {}
    for f in fingers:
        if f.mated and not f.usable():
            continue  # nothing to enrol
        groups.setdefault((f.database, f.mated), []).append(f)
    for group in groups.values():
        for i in range(0, len(group) - per_person + 1, per_person):
            persons.append(RealPerson(group[i:i + per_person]))
    return persons


def _extract_record(job: tuple[str, float]) -> bytes | None:
    """The ISO/IEC 19794-2:2011 record of one image at 500 ppi, as a border system with
    the node's extractor would send it: the four grid phases as views 0-3 (None:
    unusable)."""
    path, ppi = job
    try:
        image = load_image(Path(path).read_bytes(), ppi)
        views = extract_phases(image, POSITION)
    except ImageError:
        return None
    if len(views[0].minutiae) < MIN_MINUTIAE:
        return None
    return formats.write(MinutiaeTemplate(image.width, image.height, views), formats.ISO_2011)


def load_fingers(root: Path, ppi: dict[str, float], databases: list[str] | None,
                 held_out: int) -> list[RealFinger]:
    found = fingerprint.find_databases(root, {**DEFAULT_PPI, **ppi})
    if databases:
        unknown = sorted(set(databases) - {name for name, _, _ in found})
        if unknown:
            raise BenchError(f"--databases: {', '.join(unknown)} not found under {root}")
        found = [d for d in found if d[0] in databases]
    fingers: list[RealFinger] = []
    for name, folder, dpi in found:
        by_finger: dict[str, list[Impression]] = {}
        for path in sorted(folder.iterdir()):
            match = fingerprint.NAME.match(path.name)
            if match:
                by_finger.setdefault(match[1], []).append(
                    Impression(name, match[1], int(match[2]), path, dpi))
        names = sorted(by_finger, key=int)
        if len(names) <= held_out:
            raise BenchError(f"{name}: {len(names)} fingers, --held-out {held_out} leaves none "
                             "to enrol")
        for i, finger in enumerate(names):
            fingers.append(RealFinger(name, finger, i < len(names) - held_out,
                                      sorted(by_finger[finger], key=lambda m: m.number)))
    impressions = [imp for f in fingers for imp in f.impressions]
    progress(f"extracting {len(impressions)} real impressions "
             f"({', '.join(sorted({f.database for f in fingers}))}) on 2 processes")
    with ProcessPoolExecutor(max_workers=2) as pool:
        for imp, record in zip(impressions, pool.map(
                _extract_record, [(str(imp.path), imp.ppi) for imp in impressions],
                chunksize=8), strict=True):
            imp.record = record
    failed = [imp.name for imp in impressions if imp.record is None]
    if failed:
        progress(f"  {len(failed)} impressions unusable (extraction failed or fewer than "
                 f"{MIN_MINUTIAE} minutiae): {', '.join(failed[:8])}"
                 f"{' ...' if len(failed) > 8 else ''}")
    return fingers


# --- the gallery ----------------------------------------------------------------------

_SOURCES: list[matching.MatchTemplate] = []


def _init_sources(sources: list[matching.MatchTemplate]) -> None:
    _SOURCES[:] = sources


def synthetic_record(source: matching.MatchTemplate, rng: np.random.Generator,
                     position: int = POSITION) -> tuple[bytes, int] | None:
    """A synthetic finger (fingerprint.synthetic_finger) as a 500 ppi ISO/IEC
    19794-2:2011 record, and its minutiae count; None when too few minutiae are left."""
    x, y, theta = fingerprint.synthetic_finger(source, rng)
    n = min(int(x.shape[0]), 255)
    if n < MIN_MINUTIAE:
        return None
    cols = np.rint(x[:n] - x[:n].min()).astype(int) + MARGIN
    rows = np.rint(-y[:n] - (-y[:n]).min()).astype(int) + MARGIN  # y up -> image rows
    angles = np.degrees(theta[:n]) % 360.0
    kinds = rng.integers(1, 3, n)
    qualities = rng.integers(20, 101, n)
    minutiae = tuple(
        Minutia(int(c), int(r), float(a) if a < 360.0 else 0.0, MinutiaType(int(k)), int(q))
        for c, r, a, k, q in zip(cols, rows, angles, kinds, qualities, strict=True))
    template = MinutiaeTemplate(int(cols.max()) + MARGIN + 1, int(rows.max()) + MARGIN + 1,
                                (FingerView(position, minutiae),))
    return formats.write(template, formats.ISO_2011), n


def _synthetic_chunk(job: tuple[int, int, int, int]) -> list[tuple[bytes, int]]:
    """The synthetic records of `count` persons of `per_person` fingers (at POSITIONS, in
    order, person after person), reproducible from (seed, chunk number)."""
    seed, number, count, per_person = job
    rng = np.random.default_rng([seed, number])
    out: list[tuple[bytes, int]] = []
    while len(out) < count * per_person:
        position = POSITIONS[len(out) % per_person]
        made = synthetic_record(_SOURCES[int(rng.integers(len(_SOURCES)))], rng, position)
        if made is not None:
            out.append(made)
    return out


def fill_gallery(db: Database, persons: list[RealPerson], size: int, seed: int,
                 per_person: int) -> dict[str, Any]:
    """Enrol the real mated persons through the Gallery, then add synthetic persons (of
    `per_person` fingers each) up to `size` fingers by bulk inserts; returns what was
    built."""
    gallery = Gallery(db)
    started = time.perf_counter()
    real = 0
    enrolled = [p for p in persons if p.mated]
    for person in enrolled:
        fingers = [(position, formats.read(at_position(imp.record or b"", position),
                                           formats.ISO_2011))
                   for position, imp in zip(POSITIONS, person.enrolled(), strict=False)]
        result = gallery.enrol(person.reference, fingers)
        if not result.enrolled:
            raise BenchError(f"{person.reference}: not enrolled: {result.rejected}")
        real += len(fingers)
    if real > size:
        raise BenchError(f"--gallery {size} is smaller than the {real} real fingers")
    # Only the enrolled impressions: a synthetic finger made from a probe's own impression
    # would be a closer "mate" to it than the real one (and synthetic_finger mirrors, so
    # that a copy of an enrolled impression is not a second mate either).
    sources = [matching.prepare(formats.read(imp.record or b"", formats.ISO_2011).views[0])
               for person in enrolled for imp in person.enrolled()]
    synthetic = size - real
    progress(f"gallery: {real} real fingers enrolled ({len(enrolled)} persons); making "
             f"{synthetic} synthetic fingers from the {len(sources)} real templates enrolled")
    with db.session() as s:
        next_person = int(s.scalar(select(func.max(GalleryPerson.id))) or 0) + 1
    chunk = max(1, CHUNK // per_person)  # persons a job
    persons_wanted = synthetic // per_person
    jobs = [(seed, n, min(chunk, persons_wanted - first), per_person)
            for n, first in enumerate(range(0, persons_wanted, chunk))]
    done = 0  # synthetic persons inserted
    with ProcessPoolExecutor(max_workers=2, initializer=_init_sources,
                             initargs=(sources,)) as pool:
        for made in pool.map(_synthetic_chunk, jobs):
            now = utcnow()
            count = len(made) // per_person
            ids = range(next_person + done, next_person + done + count)
            with db.connection() as conn:
                conn.execute(insert(GalleryPerson), [
                    {"id": pid, "reference": f"syn-{pid:07d}", "label": None,
                     "created_at": now, "updated_at": now} for pid in ids])
                conn.execute(insert(GalleryFinger), [
                    {"person_id": ids[i // per_person], "position": POSITIONS[i % per_person],
                     "impression": 1, "template": record, "nfiq2": None,
                     "minutiae_count": minutiae, "created_at": now}
                    for i, (record, minutiae) in enumerate(made)])
            done += count
            progress(f"  gallery: {real + done * per_person}/{size} fingers")
    if db.engine.dialect.name == "postgresql" and synthetic:
        with db.connection() as conn:  # explicit ids: move the sequences past them
            for table in ("gallery_persons", "gallery_fingers"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
    build_s = time.perf_counter() - started
    # What the node will read at start-up: the templates load through the Gallery.
    counted = gallery.finger_count()
    if counted != size:
        raise BenchError(f"gallery: {counted} fingers stored, {size} expected")
    sample = list(itertools.islice(gallery.iter_templates(), 1000))
    if len(sample) != min(size, 1000) or any(t.position not in POSITIONS[:per_person]
                                             for t in sample):
        raise BenchError("gallery: the stored templates do not load back")
    if synthetic and not any(t.reference.startswith("syn-") for t in sample):
        raise BenchError("gallery: no synthetic finger among the templates read back")
    progress(f"gallery: {size} fingers in {build_s:.1f}s; {len(sample)} read back through "
             "Gallery.iter_templates")
    return {"real_fingers": real, "real_persons": len(enrolled),
            "synthetic_fingers": synthetic, "build_s": build_s, "sources": len(sources)}


# --- the probes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    kind: str  # "template" or "image"
    mated: bool
    impressions: tuple[Impression, ...]  # one a finger, at POSITIONS in order
    mate: str | None  # the gallery reference of the mate

    @property
    def name(self) -> str:
        return " + ".join(imp.name for imp in self.impressions)

    def fingers(self) -> list[dict[str, Any]]:
        out = []
        for position, imp in zip(POSITIONS, self.impressions, strict=False):
            if self.kind == "image":
                out.append({"position": position, "kind": "image", "ppi": imp.ppi,
                            "data": base64.b64encode(imp.path.read_bytes()).decode()})
            else:
                record = at_position(imp.record or b"", position)
                out.append({"position": position, "kind": "template",
                            "data": base64.b64encode(record).decode()})
        return out


def _cycle(items: list[list[Impression]], rng: np.random.Generator
           ) -> Iterator[list[Impression]]:
    while True:
        yield from [items[i] for i in rng.permutation(len(items))]


def _shares(blocks: tuple[int, ...], share: float, rng: np.random.Generator) -> list[bool]:
    """True for round(share x n) of each block of n, in random order within the block."""
    out: list[bool] = []
    for n in blocks:
        k = round(n * share)
        out += [bool(v) for v in rng.permutation([True] * k + [False] * (n - k))]
    return out


def plan_probes(persons: list[RealPerson], blocks: tuple[int, ...], mated_share: float,
                image_share: float, seed: int) -> list[Probe]:
    """The probes of each block (the warm-up, then the measured checks): mated and
    non-mated at --mated-share, images at --image-share (only images AUS accepts: NFIQ 2
    at least its probe minimum, every finger of the probe)."""
    rng = np.random.default_rng(seed)
    mated_pool = [(p.reference, fingers) for p in persons if p.mated
                  for fingers in p.probes(mated=True)]
    other_pool = [(None, fingers) for p in persons if not p.mated
                  for fingers in p.probes(mated=False)]
    mates = {tuple(imp.name for imp in fingers): ref for ref, fingers in mated_pool}
    if mated_share > 0 and not mated_pool:
        raise BenchError("no mated probe available (no real person with two usable "
                         "impressions of every finger)")
    if mated_share < 1 and not other_pool:
        raise BenchError("no non-mated probe available (--held-out too small for a person)")
    kinds_mated = _shares(blocks, mated_share, rng)
    images = _shares(blocks, image_share, rng)
    mated_it = _cycle([f for _, f in mated_pool], rng)
    other_it = _cycle([f for _, f in other_pool], rng)
    minimum = QualityPolicy().probe_minimum
    quality: dict[str, int | None] = {}

    def good_image(imp: Impression) -> bool:
        if imp.name not in quality:
            try:
                quality[imp.name] = nfiq2(load_image(imp.path.read_bytes(), imp.ppi)).score
            except ImageError:
                quality[imp.name] = None
        score = quality[imp.name]
        return score is not None and score >= minimum

    probes = []
    for i, mated in enumerate(kinds_mated):
        source = mated_it if mated else other_it
        kind = "image" if images[i] else "template"
        for _ in range(len(mated_pool) + len(other_pool)):
            fingers = next(source)
            if kind == "template" and any(imp.record is None for imp in fingers):
                continue
            if kind == "image" and not all(good_image(imp) for imp in fingers):
                continue
            break
        else:
            raise BenchError(f"no usable {'mated' if mated else 'non-mated'} {kind} probe")
        mate = mates.get(tuple(imp.name for imp in fingers)) if mated else None
        probes.append(Probe(kind, mated, tuple(fingers), mate))
    return probes


# --- the network --------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Network:
    work: Path
    env: dict[str, str]
    procs: list[Proc]
    hub_db: str
    node_db: dict[str, str | None]  # member -> --db (None: SQLite in its data dir)
    urls: dict[str, str] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)  # member -> admin API token

    def db_args(self, member: str) -> list[str]:
        url = self.node_db[member]
        return ["--db", url] if url else []

    def node_url(self, member: str) -> str:
        return self.node_db[member] or f"sqlite:///{(self.work / member / 'node.db').resolve()}"


def create_pg_databases(admin: str, names: list[str]) -> list[str]:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    return [f"{base}/{name}" for name in names]


def drop_pg_databases(admin: str, names: list[str]) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_hub(net: Network, port: int) -> None:
    hub_url = f"http://{HOST}:{port}"
    out = _lintas("hub", "init", "--db", net.hub_db, env=net.env, cwd=net.work)
    fp = " ".join(out.split("fingerprint:")[1].split())
    net.procs.append(_start("hub", ["hub", "serve", "--db", net.hub_db, "--host", HOST,
                                    "--port", str(port), "--log-file",
                                    str(net.work / "hub.log")], hub_url, net.env, net.work))
    _wait_healthy(net.procs[-1], time.monotonic() + SETUP_TIMEOUT_S)
    net.urls["hub"] = hub_url
    for code, name in MEMBERS:
        data = net.work / code
        _lintas("node", "init", "--member", code, "--hub-url", hub_url, "--hub-fingerprint", fp,
                "--data-dir", str(data), *net.db_args(code), "--yes", env=net.env, cwd=net.work)
        net.admin[code] = (data / "api-token").read_text().strip()
        _lintas("hub", "member", "add", code, "--name", name, "--keys",
                str(data / f"{code}.keys.json"), "--db", net.hub_db, env=net.env, cwd=net.work)
    progress(f"hub serving on {hub_url}; {', '.join(net.admin)} initialised and onboarded")


def add_user(net: Network, member: str, username: str, role: str) -> str:
    out = _lintas("user", "add", username, "--role", role, "--data-dir",
                  str(net.work / member), *net.db_args(member), env=net.env, cwd=net.work)
    return out.strip().splitlines()[-1].strip()


def start_node(net: Network, member: str, port: int, timeout: float) -> float:
    """Start a node; the seconds from process start to /health answering and the node
    in contact with the hub."""
    url = f"http://{HOST}:{port}"
    started = time.monotonic()
    net.procs.append(_start(member, ["node", "serve", "--data-dir", str(net.work / member),
                                     *net.db_args(member), "--host", HOST, "--port", str(port),
                                     "--log-file", str(net.work / f"{member}.log")],
                            url, net.env, net.work))
    _wait_healthy(net.procs[-1], started + timeout)
    healthy = time.monotonic() - started
    while httpx.get(url + "/health", timeout=5).json()["status"] != "ok":
        if time.monotonic() > started + timeout:
            raise BenchError(f"{member} did not reach the hub in time")
        time.sleep(0.05)
    net.urls[member] = url
    return healthy


def call(url: str, token: str, method: str, path: str, status: int = 200,
         **kw: Any) -> Any:
    r = httpx.request(method, url + path, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}, **kw)
    if r.status_code != status:
        raise BenchError(f"{method} {path}: {r.status_code} {r.text[:500]}")
    return r.json() if r.content else None


def agree(net: Network, quota: int) -> None:
    today = date.today()
    terms = Agreement(AGREEMENT_ID, "Check latency benchmark", REQUESTER, RESPONDER,
                      today - timedelta(days=1), today + timedelta(days=365), (Direction(
                          REQUESTER, RESPONDER, (PURPOSE,), (QUERY_TYPE,), "automatic",
                          MAX_CANDIDATES, quota, quota, (), 30),))
    aus, idn = net.urls[REQUESTER], net.urls[RESPONDER]
    call(aus, net.admin[REQUESTER], "POST", "/api/v1/agreements", 201, json=terms.as_json())
    path = f"/api/v1/agreements/{AGREEMENT_ID}"

    def at(url: str, member: str) -> Any:
        r = httpx.get(url + path, timeout=30,
                      headers={"Authorization": f"Bearer {net.admin[member]}"})
        return r.json().get("status") if r.status_code == 200 else None

    until("agreement received at IDN", lambda: at(idn, RESPONDER), lambda s: s == "received")
    call(idn, net.admin[RESPONDER], "POST", path + "/countersign")
    until("agreement active at AUS", lambda: at(aus, REQUESTER), lambda s: s == "active")
    progress(f"agreement {AGREEMENT_ID} active (daily and annual quota {quota})")


# --- the checks ---------------------------------------------------------------------


@dataclass
class Result:
    probe: Probe
    check_id: str
    started: float  # perf_counter, before the POST
    ended: float  # perf_counter, the GET that showed the answer returned
    wall_ended: float  # time.time() at `ended`
    state: str
    polls: int
    candidates: int
    responder: dict[str, Any] | None = None  # IDN's view of the check (after the run)
    requester: dict[str, Any] | None = None  # AUS's view when answered

    @property
    def ms(self) -> float:
        return 1000 * (self.ended - self.started)


def run_checks(url: str, token: str, probes: list[Probe], concurrency: int,
               poll_s: float) -> list[Result]:
    """Submit every probe through the officer's API, `concurrency` at a time, and wait
    for each answer by a long poll of its status (or, with `poll_s`, by polling)."""
    todo: queue.Queue[tuple[int, Probe]] = queue.Queue()
    for item in enumerate(probes):
        todo.put(item)
    results: list[Result | None] = [None] * len(probes)
    errors: list[BaseException] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            while not errors:
                try:
                    i, probe = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = one(client, probe)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)
                    return

    def one(client: httpx.Client, probe: Probe) -> Result:
        body = {"partner": RESPONDER, "agreement": AGREEMENT_ID, "purpose": PURPOSE,
                "query_type": QUERY_TYPE, "fingers": probe.fingers()}
        started = time.perf_counter()
        r = client.post("/api/v1/checks", json=body)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/checks ({probe.name}, {probe.kind}): "
                             f"{r.status_code} {r.text[:300]}")
        check_id, state = r.json()["id"], r.json()["state"]
        polls = 0
        while True:
            if poll_s > 0:
                time.sleep(poll_s)
                got = client.get(f"/api/v1/checks/{check_id}")
            else:  # a long poll: answered when the state changes
                got = client.get(f"/api/v1/checks/{check_id}",
                                 params={"changed_from": state, "wait": 30})
            polls += 1
            now = time.perf_counter()
            if got.status_code != 200:
                raise BenchError(f"GET /api/v1/checks/{check_id}: {got.status_code} "
                                 f"{got.text[:300]}")
            view = got.json()
            state = view["state"]
            if view["state"] in ANSWERED or view["state"] in FAILED:
                return Result(probe, check_id, started, now, time.time(), view["state"],
                              polls, len(view["candidates"]), requester=view)
            if now - started > CHECK_TIMEOUT_S:
                raise BenchError(f"check {check_id} not answered in {CHECK_TIMEOUT_S:.0f}s "
                                 f"(state {view['state']})")

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(max(1, min(concurrency, len(probes))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def stages(results: list[Result]) -> dict[str, float]:
    """Median milliseconds of each stage, from the nodes' own timestamps (one clock):
    AUS storing the check -> IDN receiving it; IDN receiving -> answering (waiting for
    the matcher, 1:N search); IDN answering -> AUS recording the answer; AUS recording it
    -> the benchmark's poll seeing it."""
    parts: dict[str, list[float]] = {"to_responder": [], "responder_queue_and_match": [],
                                     "answer_to_requester": [], "seen_by_poll": []}
    for r in results:
        if r.responder is None or r.requester is None:
            continue
        a_created, a_answered = stamp(r.requester["created_at"]), stamp(r.requester["updated_at"])
        i_created, i_answered = stamp(r.responder["created_at"]), stamp(r.responder["updated_at"])
        parts["to_responder"].append(i_created - a_created)
        parts["responder_queue_and_match"].append(i_answered - i_created)
        parts["answer_to_requester"].append(a_answered - i_answered)
        parts["seen_by_poll"].append(r.wall_ended - a_answered)
    return {k: 1000 * statistics.median(v) for k, v in parts.items() if v}


def latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": relay.percentile(values, 50), "p90": relay.percentile(values, 90),
            "p99": relay.percentile(values, 99), "max": max(values), "min": min(values),
            "mean": statistics.fmean(values)}


# --- the run ------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    fingers = load_fingers(args.data or fingerprint.default_data(),
                           fingerprint.parse_ppi(args.ppi), args.databases, args.held_out)
    persons = group_persons(fingers, args.fingers)
    probes = plan_probes(persons, (args.warmup, args.checks), args.mated_share,
                         args.image_share, args.seed)

    procs: list[Proc] = []
    env = local_environment(work)
    node_db: dict[str, str | None] = {code: None for code, _ in MEMBERS}
    hub_db = f"sqlite:///{work / 'hub' / 'hub.db'}"
    if args.backend == "postgresql":
        prefix = f"lintas_bench_{uuid.uuid4().hex[:10]}"
        names = [f"{prefix}_hub", *(f"{prefix}_{code.lower()}" for code, _ in MEMBERS)]
        try:
            urls = create_pg_databases(args.pg_url, names)
        except Exception as exc:
            raise BenchError(f"--backend postgresql: cannot create databases at "
                             f"{args.pg_url}: {exc}") from None
        if args.keep:
            progress(f"--keep: the databases {', '.join(names)} are kept")
        else:
            stack.callback(drop_pg_databases, args.pg_url, names)
        hub_db = urls[0]
        node_db = {code: url for (code, _), url in zip(MEMBERS, urls[1:], strict=True)}
    stack.callback(_stop, procs)  # before the databases are dropped
    net = Network(work, env, procs, hub_db, node_db)
    hub_port, aus_port, idn_port = free_ports(3)
    start_hub(net, hub_port)

    idn_db = node_database(net.node_url(RESPONDER))
    try:
        gallery = fill_gallery(idn_db, persons, args.gallery, args.seed, args.fingers)
    finally:
        idn_db.dispose()
    officer = add_user(net, REQUESTER, "bench.officer", "officer")
    supervisor = add_user(net, RESPONDER, "bench.supervisor", "supervisor")

    aus_start = start_node(net, REQUESTER, aus_port, SETUP_TIMEOUT_S)
    progress(f"{REQUESTER}: serving on {net.urls[REQUESTER]} after {aus_start:.1f}s")
    progress(f"{RESPONDER}: starting; building its 1:N index of {args.gallery} fingers")
    idn_start = start_node(net, RESPONDER, idn_port, SETUP_TIMEOUT_S + args.gallery * 0.02)
    progress(f"{RESPONDER}: serving on {net.urls[RESPONDER]} after {idn_start:.1f}s")
    agree(net, min(MAX_QUOTA, max(1000, 10 * len(probes))))

    aus = net.urls[REQUESTER]
    poll_s = args.poll_ms / 1000
    warm = probes[:args.warmup]
    if warm:
        progress(f"warm-up: {len(warm)} checks, not counted")
        run_checks(aus, officer, warm, 1, poll_s)
    measured = probes[args.warmup:]
    progress(f"measuring: {len(measured)} checks, {args.concurrency} in flight, "
             + (f"polling every {args.poll_ms:g} ms" if args.poll_ms else "long polls"))
    pids = {p.name: p.process.pid for p in procs}
    cpu0 = {name: relay.cpu_seconds(pid) for name, pid in pids.items()}
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    results = run_checks(aus, officer, measured, args.concurrency, poll_s)
    load_after = os.getloadavg()[0]
    wall = max(r.ended for r in results) - began
    cpu = {name: relay.cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    progress(f"measured {len(results)} checks in {wall:.1f}s; reading IDN's side")

    idn = net.urls[RESPONDER]
    for r in results:
        r.responder = call(idn, supervisor, "GET", f"/api/v1/checks/{r.check_id}")

    def rate(items: list[Result], good: Any) -> float | None:
        return sum(1 for r in items if good(r)) / len(items) if items else None

    mated = [r for r in results if r.probe.mated]
    other = [r for r in results if not r.probe.mated]
    by_kind = {kind: [r.ms for r in results if r.probe.kind == kind]
               for kind in ("template", "image")}

    def first_ref(r: Result) -> str | None:
        cands = (r.responder or {}).get("candidates") or []
        return cands[0].get("reference") if cands else None

    counts: dict[str, int] = {}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {
        "gallery_fingers": args.gallery,
        "checks": len(results),
        "latency_ms": latency([r.ms for r in results]),
        "checks_per_s": len(results) / wall,
        "latency_ms_by_probe_kind": {k: {"checks": len(v), **latency(v)}
                                     for k, v in by_kind.items() if v},
        "concurrency": args.concurrency,
        "warmup_checks": len(warm),
        "poll_ms": args.poll_ms,
        "backend": args.backend,
        "seconds": wall,
        "states": counts,
        "mated_checks": len(mated),
        "mated_hit_rate": rate(mated, lambda r: r.state == "hit"),
        "mated_true_mate_first": rate(mated, lambda r: first_ref(r) == r.probe.mate),
        "non_mated_checks": len(other),
        "non_mated_false_hit_rate": rate(other, lambda r: r.state == "hit"),
        "non_mated_false_hits_on_synthetic": sum(
            1 for r in other if r.state == "hit" and (first_ref(r) or "").startswith("syn-")),
        "stages_ms_p50": stages(results),
        "polls_per_check": statistics.fmean(r.polls for r in results),
        "cpu_s_per_check": {name: c / len(results) for name, c in cpu.items()},
        "real_fingers": gallery["real_fingers"],
        "real_persons": gallery["real_persons"],
        "synthetic_fingers": gallery["synthetic_fingers"],
        "synthetic_sources": gallery["sources"],
        "fingers_per_person": args.fingers,
        "databases": sorted({f.database for f in fingers}),
        "gallery_build_s": gallery["build_s"],
        "responder_startup_s": idn_start,
        "requester_startup_s": aus_start,
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every figure: the 1-minute load average at the
        # start and at the end of the measured checks (this benchmark's own processes
        # included).
        "load_average": [load_before, load_after],
        "seed": args.seed,
    }


def table(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    lines = [
        f"Fingerprint check, {REQUESTER} submit -> answer back (hub + 2 nodes on loopback, "
        f"{r['backend']}, {r['cpu_count']} cores)",
        "-" * 86,
        f"gallery at {RESPONDER}         {r['gallery_fingers']} fingers, "
        f"{r['fingers_per_person']} a person: "
        f"{r['real_fingers']} REAL (FVC2004 {', '.join(r['databases'])}), "
        f"{r['synthetic_fingers']} SYNTHETIC",
        f"gallery build            {r['gallery_build_s']:.1f} s (real enrolment + synthetic "
        "generation + bulk insert)",
        f"{RESPONDER} start-up           {r['responder_startup_s']:.1f} s to /health (1:N index "
        f"built from the database; {REQUESTER}, empty gallery: "
        f"{r['requester_startup_s']:.1f} s)",
        f"checks                   {r['checks']} counted after {r['warmup_checks']} warm-up, "
        f"{r['concurrency']} in flight, "
        + (f"status polled every {r['poll_ms']:g} ms" if r["poll_ms"] else
           "status followed by long polls"),
        f"latency ms               p50 {lat['p50']:.0f}   p99 {lat['p99']:.0f}   "
        f"max {lat['max']:.0f}   (p90 {lat['p90']:.0f}, mean {lat['mean']:.0f})",
    ]
    for kind, k in r["latency_ms_by_probe_kind"].items():
        lines.append(f"  {kind + ' probes':<22} {k['checks']:>4} checks: p50 {k['p50']:.0f}   "
                     f"p99 {k['p99']:.0f}   max {k['max']:.0f}")
    lines.append(f"sustained                {r['checks_per_s']:.2f} checks/s "
                 f"({r['seconds']:.1f} s first submit -> last answer)")
    if r["mated_hit_rate"] is not None:
        lines.append(f"mated probes             {r['mated_checks']}: hit rate "
                     f"{r['mated_hit_rate']:.3f}, true mate first "
                     f"{r['mated_true_mate_first']:.3f}")
    if r["non_mated_false_hit_rate"] is not None:
        lines.append(f"non-mated probes         {r['non_mated_checks']}: false hits "
                     f"{r['non_mated_false_hit_rate']:.3f} "
                     f"({r['non_mated_false_hits_on_synthetic']} on synthetic fingers)")
    lines.append("states                   " + ", ".join(f"{k} {v}" for k, v in
                                                      sorted(r["states"].items())))
    st = r["stages_ms_p50"]
    if st:
        lines.append(f"stages, median ms        to {RESPONDER} {st['to_responder']:.0f} | "
                     f"{RESPONDER} queue + 1:N match {st['responder_queue_and_match']:.0f} | "
                     f"answer to {REQUESTER} {st['answer_to_requester']:.0f} | "
                     f"seen by poll {st['seen_by_poll']:.0f}")
    lines.append("CPU s per check          " + ", ".join(
        f"{k} {v:.3f}" for k, v in r["cpu_s_per_check"].items())
        + " (1-min load average {:.1f} -> {:.1f})".format(*r["load_average"]))
    lines.append("Probes are REAL FVC2004 impressions (ISO 19794-2:2011 templates unless "
                 "listed as image probes); the gallery's SYNTHETIC fingers are perturbed real "
                 "templates (benchmarks/fingerprint.py).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=100000,
                        help="fingers in the responder's gallery (default 100000)")
    parser.add_argument("--checks", type=int, default=200, help="checks measured")
    parser.add_argument("--concurrency", type=int, default=4, help="checks in flight")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_ADMIN,
                        help="PostgreSQL server to create the fresh databases on (default "
                             "$LINTAS_TEST_PG or the local test database)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of FVC-style databases (default: the shared FVC2004)")
    parser.add_argument("--databases", nargs="+", metavar="NAME",
                        help="only these databases, e.g. DB3_B (default: all)")
    parser.add_argument("--ppi", action="append", default=[], metavar="NAME=PPI",
                        help="resolution of one database (DB3_B=512 is the default)")
    parser.add_argument("--fingers", type=int, default=1,
                        help="fingers a person, in the gallery and in each probe (1-4): "
                             "consecutive real fingers of a database make one person")
    parser.add_argument("--held-out", type=int, default=3,
                        help="fingers per database kept out of the gallery: the non-mated "
                             "probes")
    parser.add_argument("--mated-share", type=float, default=0.5)
    parser.add_argument("--image-share", type=float, default=0.1,
                        help="share of probes sent as images (the rest as templates)")
    parser.add_argument("--warmup", type=int, default=3, help="checks not counted")
    parser.add_argument("--poll-ms", type=float, default=0.0,
                        help="poll GET /api/v1/checks/{id} every this many ms instead of "
                             "the long poll (0, the default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.gallery < 1 or args.checks < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--gallery, --checks and --concurrency must be at least 1, --warmup 0+")
    if not (0 <= args.mated_share <= 1 and 0 <= args.image_share <= 1):
        parser.error("--mated-share and --image-share must be within 0..1")
    if args.held_out < 0 or args.poll_ms < 0:
        parser.error("--held-out and --poll-ms must be 0+")
    if not 1 <= args.fingers <= len(POSITIONS) or args.gallery % args.fingers:
        parser.error(f"--fingers must be 1..{len(POSITIONS)} and divide --gallery")

    work = Path(tempfile.mkdtemp(prefix="lintas-check-bench-"))
    with ExitStack() as stack:
        if args.keep:
            progress(f"--keep: work directory {work}")
        else:
            stack.callback(shutil.rmtree, work, True)
        try:
            result = run(args, work, stack)
        except (BenchError, DemoError, httpx.HTTPError) as exc:
            progress(f"failed: {exc}")
            for log in sorted(work.glob("*.out")):
                tail = log.read_text(errors="replace")[-1500:]
                if tail.strip():
                    print(f"--- last lines of {log.name} ---\n{tail}", file=sys.stderr)
            return 1
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
