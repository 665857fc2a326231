"""A member's national node: its keys, outbox, inbox and REST API.

It only ever connects out to the hub; the hub never connects to a node.
"""

from pathlib import Path

from lintas.storage import Database

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "lintas_node_version"


def node_database(url: str) -> Database:
    return Database(url, MIGRATIONS, VERSION_TABLE)
