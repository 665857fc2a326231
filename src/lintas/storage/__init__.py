"""Database plumbing shared by the hub and the node: engines, migrations, time types.

SQLite files are the embedded default; PostgreSQL (psycopg 3) is the production store.
Both are driven through SQLAlchemy 2 and migrated with Alembic.
"""

from lintas.storage.database import Database, make_engine, normalise_url
from lintas.storage.types import UTCDateTime, utcnow

__all__ = ["Database", "UTCDateTime", "make_engine", "normalise_url", "utcnow"]
