"""Request tokens: how a node proves to the hub that it is the member it claims.

Each mailbox request carries `Authorization: Lintas <JWS>` with a short-lived token,
signed by one of the member's valid signing keys and bound to the HTTP method, the path
and the SHA-256 of the request body, so a token lifted from one request cannot fetch on
another path or acknowledge other messages. Within its 60 s a token can be replayed only
for the identical request, which is idempotent (a repeated ack, a repeated poll).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lintas.crypto import KeyPair
from lintas.protocol.envelope import SIGN_ALG, VERIFY_ALGS, _b64json
from lintas.protocol.errors import Unauthorized
from lintas.protocol.members import is_member_code

REQUEST_TYP = "lintas-request+jws"
TOKEN_LIFETIME = timedelta(seconds=60)
SCHEME = "Lintas"


@dataclass(frozen=True)
class RequestClaims:
    member: str
    kid: str
    method: str
    path: str
    body: str
    issued: int
    expires: int


def body_digest(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


def make_token(member: str, key: KeyPair, method: str, path: str, now: datetime,
               body: bytes = b"") -> str:
    iat = int(now.timestamp())
    claims = {
        "sub": member,
        "htm": method.upper(),
        "htu": path,
        "bdy": body_digest(body),
        "iat": iat,
        "exp": iat + int(TOKEN_LIFETIME.total_seconds()),
        "jti": str(uuid.uuid4()),
    }
    return jws.serialize_compact(
        {"alg": SIGN_ALG, "kid": key.kid, "typ": REQUEST_TYP},
        json.dumps(claims, separators=(",", ":")).encode(),
        key.private,
        algorithms=[SIGN_ALG],
    )


def read_claims(authorization: str | None) -> RequestClaims:
    """Parse the token without verifying it: the hub then looks up the member's key."""
    if not authorization or not authorization.startswith(SCHEME + " "):
        raise Unauthorized(f"Authorization: a '{SCHEME} <token>' header is required")
    token = authorization[len(SCHEME) + 1 :].strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("Authorization: the token is not a compact JWS")
    try:
        protected = _b64json(parts[0], "token header")
        claims = _b64json(parts[1], "token claims")
    except Exception as exc:
        raise Unauthorized("Authorization: the token is not a compact JWS") from exc
    if not isinstance(protected, dict) or protected.get("typ") != REQUEST_TYP:
        raise Unauthorized(f"Authorization: typ must be {REQUEST_TYP}")
    if not isinstance(claims, dict) or not is_member_code(claims.get("sub")):
        raise Unauthorized("Authorization: sub must be a member code")
    try:
        return RequestClaims(
            member=claims["sub"],
            kid=str(protected["kid"]),
            method=str(claims["htm"]),
            path=str(claims["htu"]),
            body=str(claims["bdy"]),
            issued=int(claims["iat"]),
            expires=int(claims["exp"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unauthorized(f"Authorization: missing or invalid claim {exc}") from exc


def verify_token(
    authorization: str, key: OKPKey, method: str, path: str, now: datetime, skew: timedelta,
    body: bytes = b"",
) -> RequestClaims:
    claims = read_claims(authorization)
    token = authorization[len(SCHEME) + 1 :].strip()
    try:
        jws.deserialize_compact(token, key, algorithms=list(VERIFY_ALGS))
    except JoseError as exc:
        raise Unauthorized("Authorization: the token's signature does not verify") from exc
    ts = now.timestamp()
    if (claims.method != method.upper() or claims.path != path
            or not hmac.compare_digest(claims.body, body_digest(body))):
        raise Unauthorized("Authorization: the token was made for another request")
    if claims.expires < ts or claims.issued > ts + skew.total_seconds():
        raise Unauthorized("Authorization: the token is expired or from the future (check clocks)")
    if claims.expires - claims.issued > TOKEN_LIFETIME.total_seconds():
        raise Unauthorized("Authorization: the token lives too long")
    return claims
