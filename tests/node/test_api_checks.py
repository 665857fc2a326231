"""The check workflow through the node's REST API: two real node servers running their
background loops, a real hub, real FVC2004 prints, every call with a user's token."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lintas.biometrics.images import load_image
from lintas.node.app import create_app
from lintas.node.gallery import Gallery
from lintas.node.runtime import Node
from lintas.node.users import Principal
from tests.conftest import HubFixture, ServerThread
from tests.node.test_checks import TD3, terms

AGREEMENT = "AUS-IDN-2027-01"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:  # the domain tests cover PostgreSQL
    return str(request.param)


@dataclass
class Api:
    url: str
    tokens: dict[str, str]
    node: Node | None = None  # the served node, for what happens beside its API

    def call(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=60,
                             headers={"Authorization": f"Bearer {self.tokens[role]}"}, **kw)

    def ok(self, role: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.call(role, method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


def until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in time; last: {value}")
        time.sleep(0.1)


def served(node: Node) -> tuple[ServerThread, dict[str, str]]:
    admin = Principal("cli:test", "admin")
    tokens = {"admin": node.api_token}  # type: ignore[attr-defined]
    for role in ("officer", "supervisor", "dpo"):
        _, tokens[role] = node.users.add(f"{role}1", role, admin)
    return ServerThread(create_app(node)), tokens


@pytest.fixture
def apis(hub: HubFixture, make_node: Callable[..., Node]) -> Iterator[tuple[Api, Api]]:
    aus_node, idn_node = make_node("AUS"), make_node("IDN")
    (a, a_tokens), (i, i_tokens) = served(aus_node), served(idn_node)
    with a as a_server, i as i_server:
        yield Api(a_server.url, a_tokens, aus_node), Api(i_server.url, i_tokens, idn_node)


def tif(fvc2004: Path, name: str) -> str:
    return base64.b64encode((fvc2004 / "DB3_B" / f"{name}.tif").read_bytes()).decode()


def finger(fvc2004: Path, name: str) -> dict[str, Any]:
    return {"position": 2, "kind": "image", "data": tif(fvc2004, name), "ppi": 512}


def agree(aus: Api, idn: Api, mode: str = "automatic") -> None:
    proposed = aus.ok("admin", "POST", "/api/v1/agreements", 201,
                      json=terms(mode=mode).as_json())
    assert proposed["status"] == "proposed" and proposed["our_role"] == "proposer"
    until(lambda: idn.call("admin", "GET", f"/api/v1/agreements/{AGREEMENT}"),
          lambda r: r.status_code == 200 and r.json()["status"] == "received")
    assert idn.ok("admin", "POST", f"/api/v1/agreements/{AGREEMENT}/countersign")["status"] \
        == "active"
    until(lambda: aus.ok("officer", "GET", f"/api/v1/agreements/{AGREEMENT}"),
          lambda a: a["status"] == "active")


def submit(aus: Api, **fields: Any) -> dict[str, Any]:
    body = {"partner": "IDN", "agreement": AGREEMENT, "purpose": "border_control",
            "query_type": "fingerprint_1n", **fields}
    return aus.ok("officer", "POST", "/api/v1/checks", 201, json=body)


def settled(api: Api, role: str, check_id: str, states: set[str]) -> dict[str, Any]:
    return until(lambda: api.ok(role, "GET", f"/api/v1/checks/{check_id}"),
                 lambda c: c["state"] in states)


def test_checks_through_the_api(apis: tuple[Api, Api], fvc2004: Path) -> None:
    aus, idn = apis
    agree(aus, idn)
    # IDN's gallery: one person enrolled alone, two in a bulk import followed to the end.
    enrolled = idn.ok("admin", "POST", "/api/v1/gallery/persons", 201,
                      json={"reference": "101", "fingers": [finger(fvc2004, "101_1")]})
    assert enrolled["enrolled"] and enrolled["fingers"][0]["position"] == 2
    job = idn.ok("admin", "POST", "/api/v1/gallery/imports", 202, json={"persons": [
        {"reference": "102", "fingers": [finger(fvc2004, "102_1")]},
        {"reference": "103", "fingers": [finger(fvc2004, "103_1")]},
        {"reference": "bad", "fingers": [{"position": 2, "kind": "template",
                                          "data": base64.b64encode(b"FMR\0nonsense").decode()}]},
    ]})
    assert job["total"] == 3 and job["state"] in ("running", "done")
    done = until(lambda: idn.ok("admin", "GET", f"/api/v1/gallery/imports/{job['id']}"),
                 lambda j: j["state"] != "running")
    assert (done["state"], done["done"], done["persons"]) == ("done", 3, 2)
    assert [(x["reference"], "fingers[0].data" in x["reason"]) for x in done["rejected"]] == [
        ("bad", True)]
    idn.ok("admin", "PUT", "/api/v1/gallery/persons/101/data", 204,
           json={"data": {"name": "ANNA ERIKSSON", "nationality": "UTO"}})
    protection = idn.ok("supervisor", "POST", "/api/v1/gallery/persons/102/protections", 201,
                        json={"kind": "refugee", "states": ["AUS"], "reason": "recognised"})
    assert protection["states"] == ["AUS"]

    # A hit, then step 2 with a partial disclosure.
    hit = submit(aus, fingers=[finger(fvc2004, "101_3")])
    assert hit["state"] == "submitted"
    hit = settled(aus, "officer", hit["id"], {"hit", "no_hit", "refused"})
    assert hit["state"] == "hit" and hit["candidates"][0]["candidate"] == "c1"
    assert "reference" not in hit["candidates"][0]
    # The protected refugee: answered exactly as a no-hit.
    protected = settled(aus, "officer", submit(aus, fingers=[finger(fvc2004, "102_3")])["id"],
                        {"hit", "no_hit", "refused"})
    assert (protected["state"], protected["candidates"]) == ("no_hit", [])
    aus.ok("officer", "POST", f"/api/v1/checks/{hit['id']}/disclosure-request",
           json={"candidate": "c1", "categories": ["name", "nationality"],
                 "justification": "asylum claim under examination"})
    pending = settled(idn, "supervisor", hit["id"], {"disclosure_pending"})
    assert pending["candidates"][0]["reference"] == "101"  # the responder's own view
    r = idn.call("officer", "POST", f"/api/v1/checks/{hit['id']}/decision",
                 json={"approve": ["name"]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    idn.ok("supervisor", "POST", f"/api/v1/checks/{hit['id']}/decision",
           json={"approve": ["name"]})
    got = settled(aus, "officer", hit["id"], {"disclosed"})
    assert (got["decision"], got["disclosed"]) == ("partial", {"name": "ANNA ERIKSSON"})

    # A stolen passport found by its MRZ.
    idn.ok("admin", "POST", "/api/v1/documents", 201,
           json={"document_number": "L898902C3", "issuing_state": "UTO",
                 "document_type": "P", "status": "stolen"})
    doc = submit(aus, query_type="document", document={"mrz": TD3})
    assert settled(aus, "officer", doc["id"], {"hit", "no_hit", "refused"})["state"] == "hit"

    # Refusals name the field and store nothing.
    before = len(aus.ok("officer", "GET", "/api/v1/checks"))
    for body, status, needle in [
        ({"fingers": [{"position": 2, "data": "not base64!"}]}, 400, "fingers[0].data"),
        ({"fingers": [{"position": 2, "data": base64.b64encode(b"no image").decode()}]}, 400,
         "fingers[0].data"),
        ({"query_type": "document", "document": {"mrz": TD3[:-1] + "9"}}, 400, "document.mrz"),
        ({"fingers": [finger(fvc2004, "101_3")], "agreement": "AUS-IDN-2099-09"}, 403,
         "agreement"),
        ({"fingers": [finger(fvc2004, "101_3")], "purpose": "visa_processing"}, 403,
         "purpose"),
        ({"fingers": [finger(fvc2004, "101_3")], "partner": "THA"}, 403, "agreement"),
        ({"fingers": [finger(fvc2004, "101_3")], "max_candidates": 9}, 400, "max_candidates"),
        ({"fingers": [finger(fvc2004, "101_3")], "purpose": "sightseeing"}, 400, "purpose"),
    ]:
        payload = {"partner": "IDN", "agreement": AGREEMENT, "purpose": "border_control",
                   "query_type": "fingerprint_1n", **body}
        r = aus.call("officer", "POST", "/api/v1/checks", json=payload)
        assert r.status_code == status and needle in r.json()["error"]["message"], r.text
    assert len(aus.ok("officer", "GET", "/api/v1/checks")) == before

    # The data-protection officer verifies both trails against the hub's witness.
    for api in (aus, idn):
        verified = api.ok("dpo", "GET", "/api/v1/audit/verify")
        assert verified["intact"] and verified["entries"] > 0
        entries = api.ok("dpo", "GET", "/api/v1/audit", params={"action": "check", "limit": 500})
        actions = {x["action"] for x in entries}
        assert all(a.startswith("check.") for a in actions)
        assert actions & {"check.submit", "check.match"}
    # The data-protection report, from the verified trail: what AUS asked of IDN.
    report = aus.ok("dpo", "GET", "/api/v1/audit/report", params={"agreement": AGREEMENT})
    assert report["chain"]["intact"]
    (requester,) = [s for s in report["agreements"][0]["sides"] if s["side"] == "requester"]
    assert requester["by_query_type"]["fingerprint_1n"] == 2
    assert requester["by_query_type"]["document"] == 1
    assert requester["decisions"]["partial"] == 1 and requester["disclosure_requests"] == 1
    csv = aus.call("dpo", "GET", "/api/v1/audit/report",
                   params={"agreement": AGREEMENT, "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert f"{AGREEMENT}," in csv.text
    r = aus.call("dpo", "GET", "/api/v1/audit/report", params={"from": "2027-02-01",
                                                                 "to": "2027-01-01"})
    assert r.status_code == 400 and "period" in r.json()["error"]["message"]


def test_following_a_check_by_long_poll(apis: tuple[Api, Api]) -> None:
    aus, idn = apis
    agree(aus, idn)
    idn.ok("admin", "POST", "/api/v1/documents", 201,
           json={"document_number": "L898902C3", "issuing_state": "UTO",
                 "document_type": "P", "status": "stolen"})
    check = submit(aus, query_type="document", document={"mrz": TD3})
    seen = [check["state"]]
    while seen[-1] not in ("hit", "no_hit", "refused") and len(seen) < 20:
        got = aus.ok("officer", "GET", f"/api/v1/checks/{check['id']}",
                     params={"changed_from": seen[-1], "wait": 30})
        assert got["state"] != seen[-1], "a long poll answers on a change, not before"
        seen.append(got["state"])
    assert seen[0] == "submitted" and seen[-1] == "hit"
    assert len(seen) <= 4, seen  # one request per change of state, not a poll loop
    # Nothing changes any more: the long poll answers the same state when `wait` ends.
    began = time.monotonic()
    same = aus.ok("officer", "GET", f"/api/v1/checks/{check['id']}",
                  params={"changed_from": "hit", "wait": 0.5})
    assert same["state"] == "hit" and time.monotonic() - began >= 0.5
    r = aus.call("officer", "GET", f"/api/v1/checks/{check['id']}", params={"wait": 61})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("query.wait:")
    r = aus.call("supervisor", "GET", "/api/v1/checks/no-such-check",
                 params={"changed_from": "hit", "wait": 5})
    assert r.status_code == 404


def test_a_person_enrolled_beside_the_serving_node_is_found(
        apis: tuple[Api, Api], fvc2004: Path) -> None:
    """`lintas gallery enrol` on the node's machine writes to its database from another
    process; the serving node's 1:N index follows within its next round of work."""
    aus, idn = apis
    agree(aus, idn)
    assert idn.node is not None
    beside = Gallery(idn.node.db)  # what another process would do: no shared listeners
    print_ = load_image((fvc2004 / "DB3_B" / "104_1.tif").read_bytes(), ppi=512)
    assert beside.enrol("104", [(2, print_)]).enrolled
    check = settled(aus, "officer", submit(aus, fingers=[finger(fvc2004, "104_4")])["id"],
                    {"hit", "no_hit", "refused"})
    assert check["state"] == "hit"
    assert idn.ok("supervisor", "GET", f"/api/v1/checks/{check['id']}")["candidates"][0][
        "reference"] == "104"
    beside.delete("104")
    check = settled(aus, "officer", submit(aus, fingers=[finger(fvc2004, "104_4")])["id"],
                    {"hit", "no_hit", "refused"})
    assert check["state"] == "no_hit"


def test_the_responders_own_calibration_decides_its_hits(
        apis: tuple[Api, Api], fvc2004: Path) -> None:
    """IDN sets tables of a sensor whose impostors reach every score (rates of 1): the
    same mated check that was a hit becomes a no-hit, and a hit again once reset. A bad
    table is refused naming the field, and nothing changes."""
    aus, idn = apis
    agree(aus, idn)
    shipped = idn.ok("officer", "GET", "/api/v1/gallery/calibration")
    assert shipped["own"] is False and shipped["phased"]["impostors"] == 11520
    idn.ok("admin", "POST", "/api/v1/gallery/persons", 201,
           json={"reference": "104", "fingers": [finger(fvc2004, "104_1")]})

    def outcome() -> str:
        check = settled(aus, "officer", submit(aus, fingers=[finger(fvc2004, "104_4")])["id"],
                        {"hit", "no_hit", "refused"})
        return str(check["state"])

    assert outcome() == "hit"
    blind = {name: {**table, "source": f"a blind sensor, {name}",
                    "fmrs": [1.0] * len(table["fmrs"]),
                    "tail": {**table["tail"], "fmr": 1.0, "floor": 1.0}}
             for name, table in shipped.items() if name != "own"}
    no_tail = {**blind, "single": {**blind["single"], "tail": None}}
    r = idn.call("admin", "PUT", "/api/v1/gallery/calibration", json=no_tail)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(
        "single: no fitted tail. Counted on 11,520 impostor comparisons")
    bad = {**blind, "phased": {**blind["phased"], "fmrs": [1.0, 2.0]}}
    r = idn.call("admin", "PUT", "/api/v1/gallery/calibration", json=bad)
    assert r.status_code == 400 and r.json()["error"]["message"] == \
        "phased.fmrs: 2 rates for 352 thresholds"
    r = idn.call("supervisor", "PUT", "/api/v1/gallery/calibration", json=blind)
    assert r.status_code == 403
    assert idn.ok("dpo", "GET", "/api/v1/gallery/calibration")["own"] is False

    own = idn.ok("admin", "PUT", "/api/v1/gallery/calibration", json=blind)
    assert own["own"] is True and own["single"]["source"] == "a blind sensor, single"
    assert outcome() == "no_hit"
    assert idn.ok("admin", "DELETE", "/api/v1/gallery/calibration") == shipped
    assert outcome() == "hit"
    entries = idn.ok("dpo", "GET", "/api/v1/audit")
    changes = [(x["outcome"], x["role"], x["details"]["tables"])
               for x in sorted(entries, key=lambda x: x["seq"])
               if x["action"] == "gallery.calibration"]
    assert changes == [("set", "admin", "own"), ("reset", "admin", "shipped")]
