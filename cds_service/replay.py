"""The `jti` replay store: one table in the shared database, so a jti is accepted once everywhere.

Recording a jti is one atomic statement: insert (iss, jti, expiry), or, when the pair is already
there, take it over only if its earlier token has expired (`INSERT … ON CONFLICT DO UPDATE …
WHERE expires_at < now`). The database's primary key decides between racing workers, hosts and
replicas alike (PostgreSQL), or between the processes of one host (SQLite). Expired rows are
purged at most once a minute per process. A committed jti survives a crash of the service.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cds_service.storage.database import Database
from cds_service.storage.schema import seen_jti

PURGE_INTERVAL_SECONDS = 60.0


def _record_statement(dialect: str) -> Any:
    """Insert (iss, jti, expiry), or take over an expired row of the same pair; built once."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(seen_jti).values(
        iss=bindparam("new_iss"), jti=bindparam("new_jti"), expires_at=bindparam("new_expiry")
    )
    return statement.on_conflict_do_update(
        index_elements=[seen_jti.c.iss, seen_jti.c.jti],
        set_={"expires_at": statement.excluded.expires_at},
        where=seen_jti.c.expires_at < bindparam("now"),
    ).execution_options(preserve_rowcount=True)


class ReplayStore:
    """Remembers each (iss, jti) until its token can no longer be accepted."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._record = _record_statement(database.dialect)
        self._purge_lock = threading.Lock()
        self._next_purge = float("-inf")

    def first_use(self, iss: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Record (iss, jti) and return True, or return False if a live one was recorded before."""
        current = time.time() if now is None else now
        values = {"new_iss": iss, "new_jti": jti, "new_expiry": float(expires_at), "now": current}
        with self.database.begin() as connection:
            recorded = connection.execute(self._record, values).rowcount == 1
        self._purge_if_due(current)
        return recorded

    def _purge_if_due(self, now: float) -> None:
        """Delete expired rows, at most once per PURGE_INTERVAL_SECONDS in this process."""
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_INTERVAL_SECONDS
        self.purge(now)

    def purge(self, now: float | None = None) -> int:
        """Delete every expired row; return how many."""
        current = time.time() if now is None else now
        with self.database.begin() as connection:
            expired = delete(seen_jti).where(seen_jti.c.expires_at < float(current))
            return connection.execute(expired).rowcount

    def count(self) -> int:
        """How many (iss, jti) pairs are remembered right now."""
        with self.database.begin() as connection:
            return int(connection.execute(select(func.count()).select_from(seen_jti)).scalar_one())
