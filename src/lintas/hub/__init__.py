"""The regional hub: member directory, sealed-envelope relay, metadata-only log.

It never holds a private key of a member and never reads a payload.
"""

from pathlib import Path

from lintas.storage import Database

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "lintas_hub_version"


def hub_database(url: str) -> Database:
    return Database(url, MIGRATIONS, VERSION_TABLE)
