"""One SQLAlchemy engine per process for the configured database, safe across fork().

`database_url(text)` turns the settings' URL into a SQLAlchemy URL: `sqlite:///FILE` (the
standard library driver) or `postgresql://…` (psycopg 3). SQLite connections run in WAL mode with
`synchronous=NORMAL` and a busy timeout, so gunicorn workers on one host share the file; PostgreSQL
connections come from a small pool, checked before use. A forked child never uses the parent's
connections: the pool is replaced without closing them.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cds_service.turns import released

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}

DatabaseError = SQLAlchemyError


def database_url(text_url: str) -> URL:
    """The SQLAlchemy URL for a `sqlite:///…` or `postgresql://…` URL; ValueError otherwise."""
    try:
        url = make_url(text_url)
    except ArgumentError:
        raise ValueError("database_url is not a database URL") from None
    if url.drivername in _POSTGRES_SCHEMES:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("a SQLite database_url must name a file (sqlite:///path/to/file)")
        return url
    raise ValueError(f"database_url: unsupported database {url.drivername!r} (sqlite, postgresql)")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL journal, NORMAL sync and a busy timeout on every new SQLite connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


def _dispose_in_child(reference: weakref.ref[Database]) -> None:
    """After fork: the child starts a pool of its own and leaves the parent's connections alone."""
    database = reference()
    if database is not None:
        database.engine.dispose(close=False)


class Database:
    """The engine for one database URL, with the dialect name the stores branch on."""

    def __init__(self, url: str | URL, *, pool_size: int = 5) -> None:
        self.url = database_url(url) if isinstance(url, str) else url
        self.engine = self._create_engine(pool_size)
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _dispose_in_child(reference))

    def _create_engine(self, pool_size: int) -> Engine:
        """A pooled engine; for SQLite the file's folder is created first."""
        if self.is_sqlite:
            Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                self.url,
                pool_size=pool_size,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            module=psycopg,  # the PostgreSQL driver, named here rather than found by name
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS},
        )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.url.drivername.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        return Path(self.url.database or "") if self.is_sqlite else None

    def describe(self) -> str:
        """The URL without its password, for logs and reports."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction that commits on success and rolls back on error.

        A PostgreSQL transaction waits on the network, so it runs outside this process's turn
        (`cds_service.turns`); a SQLite one is local and short, and keeps it.
        """
        with self._outside_turn(), self.engine.begin() as connection:
            yield connection

    def _outside_turn(self) -> AbstractContextManager[None]:
        return nullcontext() if self.is_sqlite else released()

    def ping(self) -> None:
        """Raise DatabaseError unless the database answers a trivial query."""
        with self._outside_turn(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        """Close every pooled connection of this process."""
        self.engine.dispose()
