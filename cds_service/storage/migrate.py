"""Schema migrations (Alembic, packaged with the product) and the check that the schema is current.

`upgrade(database)` brings the schema to the packaged head. Replicas starting together serialise
on a lock (a PostgreSQL advisory lock, a lock file beside a SQLite database), so each migration
runs once. `picu-endotype serve` upgrades in the master before workers fork unless
`migrate_on_start = false`, when `picu-endotype db upgrade` does it and the service refuses to
start on an older schema.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from cds_service.storage.database import Database

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "cds_service.storage:migrations"
_ADVISORY_LOCK_KEY = 7_301_942_113  # any constant shared by every replica


class SchemaNotCurrent(RuntimeError):
    """The database schema is not the one this version of the service needs."""


def _config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest packaged migration."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no packaged migrations")
    return head


def current_revision(database: Database) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(database: Database) -> Iterator[None]:
    """Held while migrating, so that replicas starting at once migrate one after another."""
    sqlite_path = database.sqlite_path
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = sqlite_path.with_name(sqlite_path.name + ".migrate-lock")
        with open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    with database.engine.connect() as lock_connection:
        lock_connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        try:
            yield
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to `revision`; return the revisions before and after."""
    target = head_revision() if revision == "head" else revision
    before = current_revision(database)
    if before == target:
        return before, before
    with _migration_lock(database), database.engine.connect() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        if before != target:
            logger.info("migrating %s from %s to %s", database.describe(), before, target)
            command.upgrade(_config(connection), revision)
            connection.commit()
    return before, current_revision(database)


def check_current(database: Database) -> None:
    """Raise SchemaNotCurrent unless the schema is at the packaged head."""
    current, head = current_revision(database), head_revision()
    if current != head:
        raise SchemaNotCurrent(
            f"the database schema is at {current or 'nothing'}, this service needs {head}: "
            "run `picu-endotype db upgrade`"
        )
