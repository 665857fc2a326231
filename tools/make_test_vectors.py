"""Generate the committed JOSE test vectors in docs/test-vectors/.

Run by hand, never by the tests (tests/protocol/test_vectors.py only reads the files):

    .venv/bin/python tools/make_test_vectors.py

The keys are derived from fixed, public seeds, so they (and their kids) are the same on
every run; they are TEST KEYS ONLY and must never be used for anything else. The
timestamps, member codes and message ids are fixed as well. The JWE inside each envelope
uses a fresh ephemeral key and IV, so re-running the script changes the envelopes; commit
the regenerated files together.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from joserfc import jws
from joserfc.jwk import OKPKey

from lintas.crypto import KeyPair, load_public
from lintas.crypto.keys import KeyUse
from lintas.protocol.envelope import (
    ENVELOPE_TYP,
    RoutingHeader,
    open_payload,
    parse,
    seal,
    verify_signature,
)

OUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "test-vectors"

CREATED = datetime(2026, 11, 23, 0, 0, 0, tzinfo=UTC)
EXPIRES = CREATED + timedelta(days=1)  # 2026-11-24T00:00:00Z

PING_ID = "6f1c2b7e-0d4a-4c1e-9a53-2b8e5f0c1a01"
PONG_ID = "6f1c2b7e-0d4a-4c1e-9a53-2b8e5f0c1a02"
LEGACY_ID = "6f1c2b7e-0d4a-4c1e-9a53-2b8e5f0c1a03"

PING_TEXT = "ping from AUS: test vector 1"
# Indonesian and Thai, as a node's pong echoes the ping's text (see node/runtime.py).
PONG_TEXT = "pong from IDN: Halo dari Jakarta — สวัสดีจากกรุงเทพฯ — terima kasih"
LEGACY_TEXT = "ping from AUS: signed with the deprecated JWS alg EdDSA (RFC 8037)"

VERIFY_HOWTO = (
    "Verify: split `envelope` (JWS compact) on '.', check the Ed25519 signature over "
    "ASCII(part0 + '.' + part1) with `sender_public_jwk`, base64url-decode part1 to get "
    "the routing header, decrypt its `payload` (JWE compact, ECDH-ES/X25519 + A256GCM) "
    "with `recipient_private_jwk`, and compare the plaintext with `payload`; its id, "
    "type, from and to must equal the routing header's. See README.md."
)


def vector_key(member: str, use: KeyUse) -> KeyPair:
    """A deterministic key pair from a public seed. For test vectors only."""
    seed = hashlib.sha256(f"lintas test vector key {member} {use}".encode()).digest()
    if use == "sig":
        return KeyPair("sig", OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(seed)))
    return KeyPair("enc", OKPKey.import_key(X25519PrivateKey.from_private_bytes(seed)))


def private_jwk(pair: KeyPair) -> dict[str, Any]:
    jwk = dict(pair.private.as_dict(private=True))
    jwk["kid"] = pair.kid
    jwk["use"] = pair.use
    return jwk


def header(msg_id: str, mtype: str, sender: str, recipient: str,
           in_reply_to: str | None = None) -> RoutingHeader:
    return RoutingHeader(id=msg_id, type=mtype, sender=sender, recipient=recipient,
                         created=CREATED, expires=EXPIRES, in_reply_to=in_reply_to)


def plaintext(h: RoutingHeader, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": h.id, "type": h.type, "from": h.sender, "to": h.recipient, "body": body}


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def reseal_with_eddsa(envelope: str, signing: KeyPair, h: RoutingHeader) -> str:
    """The same routing-header bytes that `seal` produced, signed with alg "EdDSA"."""
    routing = b64url_decode(envelope.split(".")[1])
    jwe_compact = json.loads(routing)["payload"]
    # The bytes `seal` signs, rebuilt independently: they must be identical.
    rebuilt = json.dumps(h.as_json(jwe_compact), separators=(",", ":")).encode()
    if rebuilt != routing:
        raise SystemExit("routing header construction differs from lintas.protocol.envelope.seal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc's SecurityWarning for the deprecated "EdDSA"
        return jws.serialize_compact(
            {"alg": "EdDSA", "kid": signing.kid, "typ": ENVELOPE_TYP},
            routing,
            signing.private,
            algorithms=["EdDSA"],
        )


def vector(description: str, sender_sig: KeyPair, recipient_enc: KeyPair, envelope: str,
           payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "sender_public_jwk": sender_sig.public_jwk(),
        "recipient_private_jwk": private_jwk(recipient_enc),
        "envelope": envelope,
        "payload": payload,
    }


def self_check(vec: dict[str, Any]) -> None:
    """Open the vector with the project's own code before writing it."""
    parsed = parse(vec["envelope"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verify_signature(parsed, load_public(vec["sender_public_jwk"], "sig"))
    priv = vec["recipient_private_jwk"]
    opened = open_payload(parsed, {priv["kid"]: KeyPair("enc", OKPKey.import_key(priv))})
    if plaintext(opened.header, opened.body) != vec["payload"]:
        raise SystemExit("self-check failed: decrypted payload differs")


def build() -> dict[str, dict[str, Any]]:
    aus_sig, aus_enc = vector_key("AUS", "sig"), vector_key("AUS", "enc")
    idn_sig, idn_enc = vector_key("IDN", "sig"), vector_key("IDN", "enc")
    vectors: dict[str, dict[str, Any]] = {}

    ping = header(PING_ID, "diagnostic.ping", "AUS", "IDN")
    ping_body = {"text": PING_TEXT}
    vectors["01-diagnostic-ping.json"] = vector(
        "A diagnostic.ping from AUS to IDN, sealed by lintas.protocol.envelope.seal: JWS "
        "compact with protected header alg \"Ed25519\" (RFC 9864), typ "
        "\"lintas-envelope+jws\", kid = RFC 7638 thumbprint of the sender's key. "
        + VERIFY_HOWTO,
        aus_sig, idn_enc,
        seal(ping, ping_body, aus_sig, idn_enc.public()),
        plaintext(ping, ping_body),
    )

    pong = header(PONG_ID, "diagnostic.pong", "IDN", "AUS", in_reply_to=PING_ID)
    pong_body = {"text": PONG_TEXT}
    vectors["02-diagnostic-pong-reply.json"] = vector(
        "A diagnostic.pong from IDN to AUS answering vector 01 (routing header in_reply_to "
        "= the ping's id), sealed by lintas.protocol.envelope.seal with alg \"Ed25519\". "
        "The body text mixes Indonesian and Thai and contains non-ASCII characters (em "
        "dashes, Thai script): the JWE plaintext is UTF-8 JSON. " + VERIFY_HOWTO,
        idn_sig, aus_enc,
        seal(pong, pong_body, idn_sig, aus_enc.public()),
        plaintext(pong, pong_body),
    )

    legacy = header(LEGACY_ID, "diagnostic.ping", "AUS", "IDN")
    legacy_body = {"text": LEGACY_TEXT}
    sealed = seal(legacy, legacy_body, aus_sig, idn_enc.public())
    vectors["03-legacy-eddsa-alg.json"] = vector(
        "A diagnostic.ping from AUS to IDN whose JWS protected header has the deprecated, "
        "polymorphic alg \"EdDSA\" (RFC 8037) instead of \"Ed25519\". Lintas nodes sign "
        "with \"Ed25519\" but verifiers MUST still accept \"EdDSA\" from other members; "
        "the signature is the same Ed25519 algorithm over the same kind of routing header. "
        + VERIFY_HOWTO,
        aus_sig, idn_enc,
        reseal_with_eddsa(sealed, aus_sig, legacy),
        plaintext(legacy, legacy_body),
    )
    return vectors


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, vec in build().items():
        self_check(vec)
        text = json.dumps(vec, indent=2, ensure_ascii=False) + "\n"
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
