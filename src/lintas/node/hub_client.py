"""The node's only connection: outbound HTTP(S) to the hub."""

from __future__ import annotations

import json
from typing import Any

import httpx

from lintas.crypto import KeyPair
from lintas.protocol import errors as e
from lintas.protocol.auth import SCHEME, make_token
from lintas.storage import utcnow

ENVELOPE_MEDIA_TYPE = "application/jose"
JSON = {"Content-Type": "application/json"}


class HubUnavailable(Exception):
    """The hub could not be reached or answered with a server error: try again later."""


def _checked(response: httpx.Response, where: str) -> httpx.Response:
    if response.status_code == 429 and "quota_exhausted" in response.text:
        raise e.from_json(429, response.json())
    if response.status_code >= 500 or response.status_code == 429:
        raise HubUnavailable(f"{where}: HTTP {response.status_code}")
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise e.from_json(response.status_code, body)
    return response


class HubClient:
    def __init__(self, base_url: str, member: str | None = None, key: KeyPair | None = None,
                 timeout: float = 10.0) -> None:  # seconds
        self.base_url = base_url.rstrip("/")
        self.member = member
        self.key = key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        assert self.member and self.key
        token = make_token(self.member, self.key, method, path, utcnow(), body)
        return {"Authorization": f"{SCHEME} {token}"}

    def _request(self, method: str, path: str, timeout: float | None = None,
                 **kwargs: Any) -> httpx.Response:
        try:
            if timeout is not None:
                kwargs["timeout"] = timeout
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        return _checked(response, self.base_url + path)

    def hub_key(self) -> dict[str, Any]:
        return dict(self._request("GET", "/v1/hub-key").json())

    def directory(self) -> str:
        return self._request("GET", "/v1/directory").text

    def submit(self, envelope: str) -> None:
        self._request(
            "POST", "/v1/envelopes", content=envelope.encode("ascii"),
            headers={"Content-Type": ENVELOPE_MEDIA_TYPE},
        )

    def submit_batch(self, envelopes: list[str]) -> list[e.ProtocolError | None]:
        """Submit several envelopes in one request: None for each accepted one, else the
        typed refusal."""
        response = self._request("POST", "/v1/envelopes/batch", json={"envelopes": envelopes})
        results = response.json()["results"]
        if len(results) != len(envelopes):
            raise HubUnavailable("the hub answered a batch with the wrong number of results")
        return [None if r["status"] == "accepted" else e.from_json(400, {"error": r["error"]})
                for r in results]

    def mailbox(self, wait: float, limit: int = 100) -> list[dict[str, str]]:
        response = self._request(
            "GET", "/v1/mailbox", params={"wait": wait, "limit": limit},
            headers=self._auth("GET", "/v1/mailbox"), timeout=wait + 10,
        )
        return list(response.json()["envelopes"])

    def ack(self, ids: list[str]) -> int:
        body = json.dumps({"ids": ids}).encode()
        response = self._request(
            "POST", "/v1/mailbox/ack", content=body,
            headers={**self._auth("POST", "/v1/mailbox/ack", body), **JSON},
        )
        return int(response.json()["acked"])


    def register_agreement(self, document: str) -> dict[str, Any]:
        """Register a countersigned agreement at the hub (docs/agreements.md)."""
        body = json.dumps({"document": document}).encode()
        return dict(self._request(
            "POST", "/v1/agreements", content=body,
            headers={**self._auth("POST", "/v1/agreements", body), **JSON}).json())

    def agreement_status(self, agreement_id: str, notice: str) -> dict[str, Any]:
        """Send a signed status notice (suspend, resume, terminate) to the hub."""
        path = f"/v1/agreements/{agreement_id}/status"
        body = json.dumps({"notice": notice}).encode()
        return dict(self._request("POST", path, content=body,
                                  headers={**self._auth("POST", path, body), **JSON}).json())

    def agreements(self) -> list[dict[str, Any]]:
        """Our agreements as the hub has them registered, with their status."""
        response = self._request("GET", "/v1/agreements",
                                 headers=self._auth("GET", "/v1/agreements"))
        return list(response.json()["agreements"])

    def publish_audit_head(self, seq: int, digest: str) -> None:
        """Have the hub witness our audit chain head (docs/audit.md)."""
        body = json.dumps({"seq": seq, "digest": digest}).encode()
        self._request("POST", "/v1/audit/heads", content=body,
                      headers={**self._auth("POST", "/v1/audit/heads", body), **JSON})

    def audit_heads(self, page: int = 1000) -> list[tuple[int, str]]:
        """Every head of our audit trail the hub witnessed, in order (seq, digest)."""
        out: list[tuple[int, str]] = []
        while True:
            response = self._request(
                "GET", "/v1/audit/heads", params={"after": out[-1][0] if out else 0,
                                                  "limit": page},
                headers=self._auth("GET", "/v1/audit/heads"))
            heads = response.json()["heads"]
            out += [(int(h["seq"]), str(h["digest"])) for h in heads]
            if len(heads) < page:
                return out

class AsyncMailbox:
    """The mailbox long-poll for the node server's event loop: unlike a request in a
    worker thread, it is cancelled at once when the server shuts down."""

    def __init__(self, base_url: str, member: str, key: KeyPair) -> None:
        self.base_url = base_url.rstrip("/")
        self.member = member
        self.key = key
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: bytes = b"",
                    **kwargs: Any) -> httpx.Response:
        token = make_token(self.member, self.key, method, path, utcnow(), body)
        headers = {"Authorization": f"{SCHEME} {token}", **(JSON if body else {})}
        if body:
            kwargs["content"] = body
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        return _checked(response, self.base_url + path)

    async def mailbox(self, wait: float, limit: int = 100) -> list[dict[str, str]]:
        response = await self._call("GET", "/v1/mailbox", params={"wait": wait, "limit": limit},
                                    timeout=wait + 10)
        return list(response.json()["envelopes"])

    async def ack(self, ids: list[str]) -> int:
        response = await self._call("POST", "/v1/mailbox/ack", json.dumps({"ids": ids}).encode())
        return int(response.json()["acked"])
