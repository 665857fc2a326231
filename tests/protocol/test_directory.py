"""The hub-signed directory: what a node accepts."""

from __future__ import annotations

import json

import pytest

from lintas.crypto import generate
from lintas.protocol import errors as e
from lintas.protocol.directory import (
    Directory,
    DirectoryKey,
    DirectoryMember,
    sign_directory,
    verify_directory,
)
from lintas.storage import utcnow


def directory(**member_overrides: object) -> Directory:
    sig = generate("sig")
    key = DirectoryKey(sig.kid, "sig", sig.public_jwk(), utcnow(), None)
    fields = {"code": "AUS", "name": "Australia", "kind": "state", "status": "active",
              "keys": (key,)}
    fields.update(member_overrides)
    return Directory(issued_at=utcnow(), members={"AUS": DirectoryMember(**fields)})  # type: ignore[arg-type]


def test_round_trip() -> None:
    hub = generate("sig")
    d = verify_directory(sign_directory(directory(), hub), hub.public())
    assert d.members["AUS"].active


def test_key_whose_kid_is_not_its_thumbprint_is_refused() -> None:
    hub, other = generate("sig"), generate("sig")
    jwk = {k: v for k, v in other.public_jwk().items() if k != "kid"}
    bad = DirectoryKey(generate("sig").kid, "sig", jwk, utcnow(), None)
    with pytest.raises(e.DirectoryError, match="thumbprint"):
        verify_directory(sign_directory(directory(keys=(bad,)), hub), hub.public())


@pytest.mark.parametrize(("field", "value"), [("status", "deleted"), ("kind", "company")])
def test_unknown_status_or_kind_is_refused(field: str, value: str) -> None:
    hub = generate("sig")
    with pytest.raises(e.DirectoryError, match=value):
        verify_directory(sign_directory(directory(**{field: value}), hub), hub.public())


def test_version_must_be_the_integer_1() -> None:
    from joserfc import jws

    hub = generate("sig")
    doc = directory().as_json()
    doc["v"] = True
    token = jws.serialize_compact({"alg": "Ed25519", "typ": "lintas-directory+jws"},
                                  json.dumps(doc).encode(), hub.private, algorithms=["Ed25519"])
    with pytest.raises(e.DirectoryError, match="version"):
        verify_directory(token, hub.public())
