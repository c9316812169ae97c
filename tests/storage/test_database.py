"""The storage layer: URLs, engines, and the packaged migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cds_service.storage import (
    Database,
    SchemaNotCurrent,
    check_current,
    current_revision,
    database_url,
    head_revision,
    upgrade,
)
from cds_service.storage.schema import metadata

TABLES = {"seen_jti", "feedback", "audit_record", "alembic_version"}


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db.example:5432/picu", "postgresql+psycopg"),
        ("postgres://u@db.example/picu", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/picu", "postgresql+psycopg"),
        ("sqlite:////var/lib/picu/picu.sqlite3", "sqlite"),
    ],
)
def test_database_urls_choose_the_driver(given: str, driver: str):
    assert database_url(given).drivername == driver


@pytest.mark.parametrize(
    "given", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "not a url", "oracle://h"]
)
def test_unsupported_database_urls_are_refused(given: str):
    with pytest.raises(ValueError, match="database_url"):
        database_url(given)


def test_a_database_never_shows_its_password():
    database = Database("postgresql://picu:s3cret-pass@db.example/picu")

    assert "s3cret-pass" not in repr(database)
    assert "s3cret-pass" not in database.describe()


def test_upgrade_creates_every_table_and_is_idempotent(database_url: str):
    database = Database(database_url)
    assert current_revision(database) is None
    with pytest.raises(SchemaNotCurrent, match="db upgrade"):
        check_current(database)

    assert upgrade(database) == (None, head_revision())
    assert upgrade(database) == (head_revision(), head_revision())

    check_current(database)
    assert set(inspect(database.engine).get_table_names()) >= TABLES


def test_the_migrated_schema_matches_the_table_definitions(database: Database):
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)

    assert differences == []


def _upgrade_in_worker(url: str, start: Any, results: Any) -> None:
    database = Database(url)
    start.wait(timeout=30)
    results.put(upgrade(database)[1])


def test_replicas_migrating_at_once_migrate_once(database_url: str):
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=_upgrade_in_worker, args=(database_url, start, results))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert outcomes == [head_revision()] * 3
    assert current_revision(Database(database_url)) == head_revision()


def test_the_sqlite_default_runs_in_write_ahead_logging_mode(tmp_path: Path):
    path = tmp_path / "state" / "picu-endotype.sqlite3"
    upgrade(Database(f"sqlite:///{path}"))

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ping_fails_when_the_database_is_gone(postgres_server: Any):
    database = Database(postgres_server.database_url("no_such_database"))

    with pytest.raises(Exception, match="no_such_database"):
        database.ping()


def test_a_postgresql_transaction_gives_the_turn_away_and_sqlite_keeps_it(database: Database):
    import threading
    import time

    from cds_service.turns import TURNS

    expected = database.dialect == "postgresql"
    others_ran: list[bool] = []
    with TURNS.turn():
        other = threading.Thread(target=lambda: (TURNS.take(), TURNS.give()))
        other.start()
        while not TURNS._queue:  # the other thread now waits for the turn
            time.sleep(0.001)
        with database.begin():
            other.join(timeout=10 if expected else 0.2)
            others_ran.append(not other.is_alive())
    other.join(timeout=10)

    assert others_ran == [expected]
