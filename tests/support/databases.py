"""Databases for store tests: a SQLite file, or a fresh database on the session's PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

from devtools.sandbox_postgres import PostgresServer

ENGINES = ("sqlite", "postgresql")
_numbers = itertools.count(1)


def fresh_database_url(engine: str, tmp_path: Path, server: PostgresServer | None) -> str:
    """A URL of an empty database of `engine`: a new file, or a new PostgreSQL database."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'picu-endotype.sqlite3'}"
    if server is None:
        raise ValueError("a PostgreSQL database needs the session's server")
    return server.create_database(f"test_{next(_numbers)}")
