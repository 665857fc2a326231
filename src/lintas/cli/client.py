"""The commands that act as a node user through the node's REST API (`lintas check`,
`lintas agreement`, `lintas protection`): the node URL and the user's API token.

The token is never a command-line argument (it would show in the process list): it is
read from LINTAS_TOKEN, or from the file named by --token-file / LINTAS_TOKEN_FILE.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from lintas.cli.common import fail

NodeUrl = Annotated[str, typer.Option(
    "--node", envvar="LINTAS_NODE_URL", help="The node's API, e.g. http://127.0.0.1:8500.")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", envvar="LINTAS_TOKEN_FILE", dir_okay=False,
    help="File holding your API token (else the LINTAS_TOKEN environment variable).")]
DEFAULT_NODE = "http://127.0.0.1:8500"


def _fail(message: str) -> NoReturn:
    fail(message)
    raise AssertionError("fail() raises typer.Exit")


@dataclass
class Client:
    url: str
    token: str

    @classmethod
    def of(cls, node: str, token_file: Path | None) -> Client:
        if not node.startswith(("http://", "https://")):
            _fail(f"--node: {node!r} is not an http(s) URL")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                _fail(f"--token-file: {exc.strerror or exc}: {token_file}")
        else:
            token = os.environ.get("LINTAS_TOKEN", "").strip()
        if not token:
            _fail("no API token: set LINTAS_TOKEN, or give --token-file")
        return cls(node.rstrip("/"), token)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """The answer's JSON (None when empty); an error answer ends the command with the
        node's message."""
        try:
            r = httpx.request(method, self.url + path, timeout=120,
                              headers={"Authorization": f"Bearer {self.token}"}, **kw)
        except httpx.HTTPError as exc:
            _fail(f"the node at {self.url} cannot be reached: {exc}")
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                _fail(f"{err['code']}: {err['message']}")
            except (ValueError, KeyError, TypeError):
                _fail(f"HTTP {r.status_code} from the node: {r.text[:300]}")
        if not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text


def read_file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"{option}: {exc.strerror or exc}: {path}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def position_and_path(value: str, option: str) -> tuple[int, Path]:
    """`2=scan.png` -> (2, Path("scan.png"))."""
    position, sep, path = value.partition("=")
    if not sep or not position.strip().isdigit() or not 1 <= int(position) <= 10:
        _fail(f"{option}: {value!r} is not POSITION=FILE with a finger position 1-10 "
              "(1 right thumb ... 10 left little), e.g. 2=right-index.png")
    file = Path(path)
    if not file.is_file():
        _fail(f"{option}: no such file: {path}")
    return int(position), file
