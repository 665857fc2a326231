"""What every command shares: the console, and turning known errors into clear messages."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from lintas.crypto import KeyMaterialError
from lintas.protocol.errors import ProtocolError
from lintas.protocol.keyfile import KeyFileError
from lintas.protocol.members import InvalidMemberCode
from lintas.storage.database import StorageError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def friendly(func: F) -> F:
    """Show operator errors as one clear line instead of a traceback."""
    from sqlalchemy.exc import OperationalError

    from lintas.hub.registry import RegistryError
    from lintas.node.hub_client import HubUnavailable
    from lintas.node.runtime import NodeError

    known = (KeyMaterialError, KeyFileError, InvalidMemberCode, StorageError, RegistryError,
             NodeError, HubUnavailable)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProtocolError as exc:
            fail(f"{exc.code}: {exc.message}")
        except known as exc:
            fail(str(exc))
        except OperationalError as exc:
            fail(f"database unavailable: {exc.orig}")

    return wrapper  # type: ignore[return-value]


def setup_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("lintas")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
