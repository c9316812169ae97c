"""The storage layer: one SQL database for the feedback store, the JWT replay store and the audit.

SQLite (a file under `state_dir`) is the embedded default; PostgreSQL is chosen by `database_url`.
Tables are defined once (`schema`), created and changed only by the packaged Alembic migrations
(`migrate`), and reached through one `Database` per process (`database`).
"""

from cds_service.storage.database import Database, DatabaseError, database_url
from cds_service.storage.migrate import (
    SchemaNotCurrent,
    check_current,
    current_revision,
    head_revision,
    upgrade,
)
from cds_service.storage.open import open_database

__all__ = [
    "Database",
    "DatabaseError",
    "SchemaNotCurrent",
    "check_current",
    "current_revision",
    "database_url",
    "head_revision",
    "open_database",
    "upgrade",
]
