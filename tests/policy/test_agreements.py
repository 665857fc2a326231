"""Agreement terms, their two signatures and status notices (pure: no server)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.crypto import KeyPair, generate
from lintas.policy import (
    DATA_CATEGORIES,
    PURPOSES,
    QUERY_TYPES,
    Agreement,
    AgreementError,
    Direction,
    countersign,
    effective_state,
    propose,
    status_notice,
    verify,
    verify_status,
)
from lintas.policy.agreements import next_status
from lintas.protocol.directory import Directory, DirectoryKey, DirectoryMember

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def directory(**keys: KeyPair) -> Directory:
    return Directory(NOW, {code: DirectoryMember(code, code, "state", "active", (
        DirectoryKey(k.kid, "sig", k.public_jwk(), NOW - timedelta(days=30), None),))
        for code, k in keys.items()})


def terms(**changes: object) -> Agreement:
    base = Agreement("AUS-IDN-2027-01", "Border checks", "AUS", "IDN", date(2026, 1, 1),
                     date(2027, 12, 31),
                     (Direction("AUS", "IDN", ("border_control",), ("fingerprint_1n",),
                                disclosure=("name",)),))
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    return {"AUS": generate("sig"), "IDN": generate("sig"), "THA": generate("sig")}


def test_sign_countersign_verify(keys: dict[str, KeyPair]) -> None:
    d = directory(**keys)
    proposed = propose(terms(), keys["AUS"], NOW)
    assert not proposed.countersigned
    assert verify(proposed.serialize(), d, require_countersigned=False).agreement == terms()
    with pytest.raises(AgreementError, match="not countersigned by IDN"):
        verify(proposed.serialize(), d)
    both = countersign(verify(proposed.serialize(), d, require_countersigned=False),
                       keys["IDN"], NOW)
    checked = verify(both.serialize(), d)
    assert checked.countersigned
    assert [s.member for s in checked.signatures] == ["AUS", "IDN"]
    with pytest.raises(AgreementError, match="already countersigned"):
        countersign(checked, keys["IDN"])
    # The document is the standard JWS General JSON Serialization: one payload, two
    # signature objects.
    doc = json.loads(both.serialize())
    assert set(doc) == {"payload", "signatures"} and len(doc["signatures"]) == 2


def test_signature_faults_are_named(keys: dict[str, KeyPair]) -> None:
    d = directory(**keys)
    both = json.loads(countersign(propose(terms(), keys["AUS"], NOW), keys["IDN"],
                                  NOW).serialize())
    swapped = dict(both, signatures=list(reversed(both["signatures"])))
    with pytest.raises(AgreementError, match=r"signatures\[0\]: the first signature must be"):
        verify(swapped, d)
    twice = dict(both, signatures=[both["signatures"][0], both["signatures"][0]])
    with pytest.raises(AgreementError, match="a party signed twice"):
        verify(twice, d)
    forged = dict(both, signatures=[both["signatures"][0],
                                    {**both["signatures"][1],
                                     "signature": both["signatures"][0]["signature"]}])
    with pytest.raises(AgreementError, match=r"signatures\[1\].signature: does not verify"):
        verify(forged, d)
    # A key unknown to the directory (THA is not listed here).
    by_tha = countersign(propose(terms(), keys["AUS"], NOW), keys["THA"], NOW).serialize()
    with pytest.raises(AgreementError, match=r"signatures\[1\].protected.kid"):
        verify(by_tha, directory(AUS=keys["AUS"], IDN=keys["IDN"]))
    # Signed before the key was valid.
    early = propose(terms(), keys["AUS"], NOW - timedelta(days=60)).serialize()
    with pytest.raises(AgreementError, match="is not a signing key of AUS"):
        verify(early, d, require_countersigned=False)
    with pytest.raises(AgreementError, match="document: is not JSON"):
        verify("nope", d)
    with pytest.raises(AgreementError, match="document: a JWS General JSON"):
        verify({"payload": "x"}, d)


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": "x"}, "id"),
    ({"title": " "}, "title"),
    ({"proposer": "aus"}, "proposer"),
    ({"counterparty": "AUS"}, "counterparty"),
    ({"valid_until": date(2025, 1, 1)}, "valid_until"),
    ({"directions": ()}, "directions"),
])
def test_terms_rules_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(AgreementError) as info:
        terms(**changes)
    assert info.value.field == field


@pytest.mark.parametrize(("changes", "field"), [
    ({"requester": "THA"}, "directions[0].requester"),
    ({"purposes": ()}, "directions[0].purposes"),
    ({"purposes": ("fishing",)}, "directions[0].purposes"),
    ({"purposes": ("asylum", "asylum")}, "directions[0].purposes"),
    ({"query_types": ("face",)}, "directions[0].query_types"),
    ({"disclosure": ("dna",)}, "directions[0].disclosure"),
    ({"response_mode": "later"}, "directions[0].response_mode"),
    ({"max_candidates": 0}, "directions[0].max_candidates"),
    ({"daily_quota": 0}, "directions[0].daily_quota"),
    ({"annual_quota": 1, "daily_quota": 5}, "directions[0].annual_quota"),
    ({"retention_days": -1}, "directions[0].retention_days"),
    ({"false_hits_per_million": 0}, "directions[0].false_hits_per_million"),
    ({"false_hits_per_million": 10_001}, "directions[0].false_hits_per_million"),
    ({"false_hits_per_million": True}, "directions[0].false_hits_per_million"),
    ({"false_hits_per_million": 0.5}, "directions[0].false_hits_per_million"),
])
def test_direction_rules_name_the_field(changes: dict[str, object], field: str) -> None:
    d = replace(terms().directions[0], **changes)  # type: ignore[arg-type]
    with pytest.raises(AgreementError) as info:
        terms(directions=(d,))
    assert info.value.field == field


def test_the_hit_rate_is_left_out_at_its_default_so_older_signatures_still_verify(
        keys: dict[str, KeyPair]) -> None:
    """Terms signed before `false_hits_per_million` existed have no such key; they
    parse to the node's rule (1000 per million, FPIR 0.1 %) and their canonical bytes,
    hence their signatures, are unchanged. Any other rate is part of the signed terms."""
    d = directory(**keys)
    plain = terms()
    assert "false_hits_per_million" not in plain.as_json()["directions"][0]
    assert plain.directions[0].false_hits_per_million == 1000
    assert plain.directions[0].hit_fpir == 1e-3
    before = {"v": 1, "id": "AUS-IDN-2027-01", "title": "Border checks", "proposer": "AUS",
              "counterparty": "IDN", "valid_from": "2026-01-01", "valid_until": "2027-12-31",
              "directions": [{"requester": "AUS", "responder": "IDN",
                              "purposes": ["border_control"], "query_types": ["fingerprint_1n"],
                              "response_mode": "automatic", "max_candidates": 5,
                              "daily_quota": 100, "annual_quota": 10_000,
                              "disclosure": ["name"], "retention_days": 30}]}
    assert plain.canonical() == json.dumps(before, sort_keys=True,
                                           separators=(",", ":")).encode()
    strict = terms(directions=(replace(plain.directions[0], false_hits_per_million=10),))
    assert strict.as_json()["directions"][0]["false_hits_per_million"] == 10
    assert strict.directions[0].hit_fpir == 1e-5 and strict.digest() != plain.digest()
    signed = countersign(verify(propose(strict, keys["AUS"], NOW).serialize(), d,
                                require_countersigned=False), keys["IDN"], NOW)
    assert verify(signed.serialize(), d).agreement == strict
    # The default written out parses to the same terms (whose canonical form leaves it out).
    doc = plain.as_json()
    doc["directions"][0]["false_hits_per_million"] = 1000
    assert Agreement.from_json(doc) == plain
    with pytest.raises(AgreementError, match="false_hits_per_million"):
        Agreement.from_json({**doc, "directions": [{**doc["directions"][0],
                                                    "false_hits_per_million": "1000"}]})


def test_from_json_names_the_field() -> None:
    doc = terms().as_json()
    assert Agreement.from_json(doc) == terms()
    for bad, field in [({**doc, "extra": 1}, "terms"), ({**doc, "valid_from": "2026-13-01"},
                       "valid_from"), ({**doc, "directions": [{}]}, "directions[0].requester"),
                       ({**doc, "directions": "x"}, "directions"), ({**doc, "v": 2}, "v")]:
        with pytest.raises(AgreementError) as info:
            Agreement.from_json(bad)
        assert info.value.field == field, bad


@settings(max_examples=60, deadline=None)
@given(purposes=st.sets(st.sampled_from(PURPOSES), min_size=1),
       queries=st.sets(st.sampled_from(QUERY_TYPES), min_size=1),
       disclosure=st.sets(st.sampled_from(DATA_CATEGORIES)),
       daily=st.integers(1, 1000), extra=st.integers(0, 10_000),
       both=st.booleans())
def test_terms_round_trip_through_canonical_json(purposes: set[str], queries: set[str],
                                                 disclosure: set[str], daily: int, extra: int,
                                                 both: bool) -> None:
    d = Direction("AUS", "IDN", tuple(sorted(purposes)), tuple(sorted(queries)),
                  "review", 3, daily, daily + extra, tuple(sorted(disclosure)), 90)
    dirs = (d, replace(d, requester="IDN", responder="AUS")) if both else (d,)
    a = terms(directions=dirs)
    again = Agreement.from_json(json.loads(a.canonical()))
    assert again == a and again.digest() == a.digest()


def test_status_notices(keys: dict[str, KeyPair]) -> None:
    d = directory(**keys)
    signed = verify(countersign(propose(terms(), keys["AUS"], NOW), keys["IDN"],
                                NOW).serialize(), d)
    notice = status_notice(signed, "suspended", "review", "IDN", keys["IDN"], NOW)
    checked = verify_status(notice.document, signed, d)
    assert (checked.status, checked.by, checked.reason) == ("suspended", "IDN", "review")
    assert next_status("active", checked) == "suspended"
    with pytest.raises(AgreementError, match="already suspended"):
        next_status("suspended", checked)
    with pytest.raises(AgreementError, match="is terminated"):
        next_status("terminated", checked)
    with pytest.raises(AgreementError, match="reason: a suspended agreement must say why"):
        status_notice(signed, "suspended", " ", "IDN", keys["IDN"])
    with pytest.raises(AgreementError, match="by: THA is not a party"):
        status_notice(signed, "terminated", "x", "THA", keys["THA"])
    # A notice signed with AUS's key but claiming to be IDN's.
    fake = status_notice(signed, "terminated", "x", "IDN", keys["AUS"], NOW)
    with pytest.raises(AgreementError, match=r"notice\.signature|notice\.kid"):
        verify_status(fake.document, signed, d)
    # A notice for other terms does not apply to these.
    other = verify(countersign(propose(terms(title="Other"), keys["AUS"], NOW), keys["IDN"],
                               NOW).serialize(), d)
    with pytest.raises(AgreementError, match=r"notice\.agreement"):
        verify_status(status_notice(other, "terminated", "x", "AUS", keys["AUS"]).document,
                      signed, d)


def test_effective_state_by_dates() -> None:
    a = terms(valid_from=date(2026, 6, 1), valid_until=date(2026, 12, 31))
    assert effective_state("active", a, datetime(2026, 5, 31, 23, tzinfo=UTC)) == "not_yet_valid"
    assert effective_state("active", a, datetime(2026, 12, 31, 23, tzinfo=UTC)) == "active"
    assert effective_state("active", a, datetime(2027, 1, 1, tzinfo=UTC)) == "expired"
    assert effective_state("suspended", a, NOW) == "suspended"
