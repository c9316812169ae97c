"""The `jti` replay store: one SQLite file shared by every worker process of a deployment."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_jti (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX IF NOT EXISTS seen_jti_expiry ON seen_jti (expires_at);
"""
_BUSY_TIMEOUT_SECONDS = 5.0


class ReplayStore:
    """Remembers each (iss, jti) until its token can no longer be accepted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        """Open a short-lived connection; SQLite serialises writers across processes."""
        return sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)

    def first_use(self, iss: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Record (iss, jti) and return True, or return False if it was already recorded."""
        current = time.time() if now is None else now
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("DELETE FROM seen_jti WHERE expires_at < ?", (current,))
            try:
                connection.execute(
                    "INSERT INTO seen_jti (iss, jti, expires_at) VALUES (?, ?, ?)",
                    (iss, jti, expires_at),
                )
            except sqlite3.IntegrityError:
                connection.execute("COMMIT")
                return False
            connection.execute("COMMIT")
            return True
        except sqlite3.Error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def count(self) -> int:
        """How many (iss, jti) pairs are remembered right now."""
        with closing(self._connect()) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM seen_jti").fetchone()[0])
