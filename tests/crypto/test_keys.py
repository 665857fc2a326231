"""Keys: generation, sealing under a passphrase, public-key import rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from lintas.crypto import (
    KeyMaterialError,
    fingerprint,
    generate,
    load_public,
    read_passphrase,
    seal_private,
    unseal_private,
)

PASS = "a long enough passphrase"


def test_sealed_private_key_round_trips_only_with_the_passphrase() -> None:
    pair = generate("sig")
    sealed = seal_private(pair, PASS)
    assert pair.private.as_dict(private=True)["d"] not in sealed
    assert unseal_private(sealed, "sig", PASS).kid == pair.kid
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        unseal_private(sealed, "sig", "another long passphrase")
    with pytest.raises(KeyMaterialError, match="curve"):
        unseal_private(sealed, "enc", PASS)


def test_short_passphrase_is_refused() -> None:
    with pytest.raises(KeyMaterialError, match="at least 12"):
        seal_private(generate("enc"), "short")


def test_public_import_refuses_private_parts_wrong_curves_and_false_kids() -> None:
    sig, enc = generate("sig"), generate("enc")
    assert load_public(sig.public_jwk(), "sig").thumbprint() == sig.kid
    with pytest.raises(KeyMaterialError, match="private"):
        load_public(dict(sig.private.as_dict(private=True)), "sig")
    with pytest.raises(KeyMaterialError, match="Ed25519"):
        load_public(enc.public_jwk(), "sig")
    with pytest.raises(KeyMaterialError, match="thumbprint"):
        load_public({**sig.public_jwk(), "kid": enc.kid}, "sig")
    with pytest.raises(KeyMaterialError, match="JSON object"):
        load_public("not a jwk", "sig")  # type: ignore[arg-type]


def test_fingerprint_is_grouped_hex_of_the_thumbprint() -> None:
    fp = fingerprint(generate("sig").public())
    groups = fp.split(" ")
    assert len(groups) == 16 and all(len(g) == 4 for g in groups)
    assert fp == fp.upper()


def test_passphrase_file_wins_over_the_variable(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pass"
    f.write_text("from the file, long enough\n")
    monkeypatch.setenv("LINTAS_T_PASSPHRASE", "from the environment variable")
    assert read_passphrase("LINTAS_T") == "from the environment variable"
    monkeypatch.setenv("LINTAS_T_PASSPHRASE_FILE", str(f))
    assert read_passphrase("LINTAS_T") == "from the file, long enough"
    monkeypatch.setenv("LINTAS_T_PASSPHRASE_FILE", str(tmp_path / "missing"))
    with pytest.raises(KeyMaterialError, match="cannot read"):
        read_passphrase("LINTAS_T")
    monkeypatch.delenv("LINTAS_T_PASSPHRASE_FILE")
    monkeypatch.delenv("LINTAS_T_PASSPHRASE")
    with pytest.raises(KeyMaterialError, match="LINTAS_T_PASSPHRASE_FILE"):
        read_passphrase("LINTAS_T")


def test_keys_are_sealed_with_210000_pbkdf2_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite seals keys with fewer rounds (tests/conftest.py); the real setting is
    OWASP's 210,000 for PBKDF2-HMAC-SHA512, written into each sealed key's header, and a
    key sealed with it unseals."""
    from lintas.crypto import keys
    from tests.conftest import REAL_PBES2_ITERATIONS

    assert REAL_PBES2_ITERATIONS == 210_000
    monkeypatch.setattr(keys, "PBES2_ITERATIONS", REAL_PBES2_ITERATIONS)
    pair = generate("enc")
    sealed = seal_private(pair, PASS)
    header = json.loads(base64.urlsafe_b64decode(sealed.split(".")[0] + "=="))
    assert (header["alg"], header["p2c"]) == ("PBES2-HS512+A256KW", 210_000)
    assert unseal_private(sealed, "enc", PASS).kid == pair.kid


@pytest.mark.parametrize("count", [50_000_000, 300_001, 999, 1, 0, -5, "210000", True])
def test_a_sealed_key_asking_for_an_odd_pbkdf2_count_is_refused_unopened(count: object
                                                                         ) -> None:
    """The count is read from the sealed key before the passphrase can be checked: an
    altered header must not make the node derive for minutes, nor open a weak key."""
    sealed = seal_private(generate("sig"), PASS)
    segment, rest = sealed.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(segment + "=="))
    header["p2c"] = count
    altered = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(KeyMaterialError, match=r"PBES2 count \(p2c\) is .*outside "
                                               r"1,000\.\.300,000"):
        unseal_private(f"{altered}.{rest}", "sig", PASS)
