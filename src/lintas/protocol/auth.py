"""Request tokens: how a node proves to the hub that it is the member it claims.

Each mailbox request carries `Authorization: Lintas <JWS>` with a short-lived token,
signed by the member's current signing key and bound to the HTTP method and path, so a
token lifted from one request cannot fetch or acknowledge on another path.
"""

from __future__ import annotations

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
    issued: int
    expires: int


def make_token(member: str, key: KeyPair, method: str, path: str, now: datetime) -> str:
    iat = int(now.timestamp())
    claims = {
        "sub": member,
        "htm": method.upper(),
        "htu": path,
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
            issued=int(claims["iat"]),
            expires=int(claims["exp"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unauthorized(f"Authorization: missing or invalid claim {exc}") from exc


def verify_token(
    authorization: str, key: OKPKey, method: str, path: str, now: datetime, skew: timedelta
) -> RequestClaims:
    claims = read_claims(authorization)
    token = authorization[len(SCHEME) + 1 :].strip()
    try:
        jws.deserialize_compact(token, key, algorithms=list(VERIFY_ALGS))
    except JoseError as exc:
        raise Unauthorized("Authorization: the token's signature does not verify") from exc
    ts = now.timestamp()
    if claims.method != method.upper() or claims.path != path:
        raise Unauthorized("Authorization: the token was made for another request")
    if claims.expires < ts or claims.issued > ts + skew.total_seconds():
        raise Unauthorized("Authorization: the token is expired or from the future (check clocks)")
    if claims.expires - claims.issued > TOKEN_LIFETIME.total_seconds():
        raise Unauthorized("Authorization: the token lives too long")
    return claims
