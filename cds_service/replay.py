"""The `jti` replay store: one SQLite file shared by every worker process of a deployment.

Each thread of each process keeps one open connection (WAL journal, `synchronous=NORMAL`), so a
request costs one short write transaction instead of opening, syncing and closing a database.
Uniqueness across processes rests on the (iss, jti) primary key and `BEGIN IMMEDIATE`, which
SQLite serialises between every connection to the file. WAL with `synchronous=NORMAL` keeps each
committed jti through a crash of the service; only an operating-system crash or power loss may
drop the last few, and those tokens expire within their (short) lifetime.
"""

from __future__ import annotations

import os
import sqlite3
import threading
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

# Connections inherited through fork() must be neither used nor closed by the child (closing one
# could checkpoint or unlink the WAL under another process); they are kept here, untouched.
_INHERITED: list[sqlite3.Connection] = []


class ReplayStore:
    """Remembers each (iss, jti) until its token can no longer be accepted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        """Open a connection; SQLite serialises writers across processes."""
        return sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)

    def _connection(self) -> sqlite3.Connection:
        """This thread's open connection, opened afresh in a forked child process."""
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        if held is not None:
            _INHERITED.append(held[1])
        connection = self._connect()
        connection.execute("PRAGMA synchronous=NORMAL")
        self._local.held = (os.getpid(), connection)
        return connection

    def _discard_connection(self) -> None:
        """Close this thread's connection after an error, so the next call opens a fresh one."""
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None and held[0] == os.getpid():
            held[1].close()

    def first_use(self, iss: str, jti: str, expires_at: float, now: float | None = None) -> bool:
        """Record (iss, jti) and return True, or return False if it was already recorded."""
        current = time.time() if now is None else now
        connection = self._connection()
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
            self._discard_connection()
            raise

    def count(self) -> int:
        """How many (iss, jti) pairs are remembered right now."""
        with closing(self._connect()) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM seen_jti").fetchone()[0])
