"""The jti replay store is one table in the shared database: a jti is accepted once everywhere.

Every test runs against SQLite and against a real PostgreSQL server.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from cds_service.auth import Authenticator, Unauthorized
from cds_service.replay import ReplayStore
from cds_service.settings import Settings
from cds_service.storage import Database, upgrade
from cds_service.storage import database as database_module
from devtools.sandbox_postgres import PostgresServer
from tests.auth.conftest import BASE, EHR, SERVICE, client_entry
from tests.support.tokens import SigningKey, make_token

WORKERS = 4
THREADS = 8


def test_first_use_is_accepted_and_the_second_refused(database: Database):
    store = ReplayStore(database)

    assert store.first_use(EHR, "jti-1", expires_at=2_000, now=1_000) is True
    assert store.first_use(EHR, "jti-1", expires_at=2_000, now=1_001) is False


def test_same_jti_from_different_issuers_is_not_a_replay(database: Database):
    store = ReplayStore(database)

    assert store.first_use(EHR, "shared", expires_at=2_000, now=1_000) is True
    assert store.first_use("https://other.example", "shared", expires_at=2_000, now=1_000) is True


def test_expired_entries_are_purged(database: Database):
    store = ReplayStore(database)
    store.first_use(EHR, "old", expires_at=1_100, now=1_000)
    store.first_use(EHR, "young", expires_at=5_000, now=1_000)

    store.first_use(EHR, "new", expires_at=5_000, now=2_000)

    assert store.count() == 2
    assert store.first_use(EHR, "young", expires_at=5_000, now=2_001) is False


def test_a_jti_whose_token_expired_may_be_used_again(database: Database):
    store = ReplayStore(database)
    store.first_use(EHR, "reused", expires_at=1_100, now=1_000)

    assert store.first_use(EHR, "reused", expires_at=1_050, now=1_050) is False
    assert store.first_use(EHR, "reused", expires_at=3_000, now=1_200) is True
    assert store.first_use(EHR, "reused", expires_at=3_000, now=1_201) is False


def test_a_second_store_on_the_same_database_sees_the_first_ones_jti(database_url: str):
    first, second = Database(database_url), Database(database_url)
    upgrade(first)
    ReplayStore(first).first_use(EHR, "jti-x", expires_at=2_000, now=1_000)

    assert ReplayStore(second).first_use(EHR, "jti-x", expires_at=2_000, now=1_000) is False


def test_same_jti_raced_by_many_threads_is_recorded_exactly_once(database: Database):
    store = ReplayStore(database)
    barrier = threading.Barrier(THREADS)

    def record(_: int) -> bool:
        barrier.wait(timeout=30)
        return store.first_use(EHR, "threaded-race", expires_at=4_000_000_000)

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(record, range(THREADS)))

    assert sorted(outcomes) == [False] * (THREADS - 1) + [True]


def _record_in_worker(url: str, start: Any, results: Any) -> None:
    """Worker process: open the shared database, wait for the start signal, record one jti."""
    store = ReplayStore(Database(url))
    start.wait(timeout=30)
    results.put(store.first_use(EHR, "raced-jti", expires_at=4_000_000_000))


def _verify_in_worker(
    settings_fields: dict[str, Any], token: str, start: Any, results: Any
) -> None:
    """Worker process: its own Authenticator over the shared settings verifies one token."""
    authenticator = Authenticator(Settings(**settings_fields))
    start.wait(timeout=30)
    try:
        results.put(authenticator.verify(token, SERVICE).jti)
    except Unauthorized:
        results.put(None)


def _race(target: Any, *args: Any) -> list[Any]:
    """Run `target(*args, start, results)` in WORKERS forked processes (as gunicorn forks)."""
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=target, args=(*args, start, results)) for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def test_same_jti_raced_by_several_processes_is_recorded_exactly_once(database: Database):
    outcomes = _race(_record_in_worker, database.url.render_as_string(False))

    assert sorted(outcomes) == [False] * (WORKERS - 1) + [True]


def test_one_token_sent_to_several_worker_processes_is_accepted_once(
    database_url: str, tmp_path: Path
):
    key = SigningKey.generate("ES384")
    settings_fields = {
        "public_base_url": BASE,
        "state_dir": tmp_path / "state",
        "database_url": database_url,
        "audit": {"pseudonym_key": "test-key"},
        "clients": [client_entry(key)],
    }
    Authenticator(Settings(**settings_fields))  # migrates before the workers race
    token = make_token(key, iss=EHR, aud=SERVICE, extra_claims={"jti": "one-token-many-workers"})

    outcomes = _race(_verify_in_worker, settings_fields, token)

    assert outcomes.count("one-token-many-workers") == 1
    assert outcomes.count(None) == WORKERS - 1


def _record_with_inherited_store(store: ReplayStore, start: Any, results: Any) -> None:
    """Worker process: use the store object the parent built (and used) before the fork."""
    start.wait(timeout=30)
    results.put(store.first_use(EHR, "inherited-jti", expires_at=4_000_000_000))


def test_a_store_used_before_fork_records_a_raced_jti_once_across_children(database: Database):
    store = ReplayStore(database)
    assert store.first_use(EHR, "parent-jti", expires_at=4_000_000_000) is True

    outcomes = _race(_record_with_inherited_store, store)

    assert sorted(outcomes) == [False] * (WORKERS - 1) + [True]
    assert store.first_use(EHR, "inherited-jti", expires_at=4_000_000_000) is False
    assert store.first_use(EHR, "parent-jti", expires_at=4_000_000_000) is False


def test_a_jti_recorded_in_another_thread_is_refused_in_this_one(database: Database):
    store = ReplayStore(database)
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(store.first_use(EHR, "threaded", expires_at=2_000, now=1))
    )
    thread.start()
    thread.join(timeout=30)

    assert results == [True]
    assert store.first_use(EHR, "threaded", expires_at=2_000, now=2) is False


def test_a_sqlite_store_refused_by_a_locked_file_accepts_again_once_the_lock_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "picu-endotype.sqlite3"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    store = ReplayStore(database)
    assert store.first_use(EHR, "before", expires_at=2_000, now=1) is True
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OperationalError):
            store.first_use(EHR, "during", expires_at=2_000, now=2)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert store.first_use(EHR, "during", expires_at=2_000, now=3) is True
    assert store.first_use(EHR, "before", expires_at=2_000, now=3) is False


def test_a_postgresql_store_recovers_when_the_server_drops_its_connections(
    postgres_server: PostgresServer,
):
    database = Database(postgres_server.create_database("replay_dropped"))
    upgrade(database)
    store = ReplayStore(database)
    assert store.first_use(EHR, "before", expires_at=4_000_000_000) is True
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'replay_dropped' AND pid <> pg_backend_pid()"
        )

    assert store.first_use(EHR, "after", expires_at=4_000_000_000) is True
    assert store.first_use(EHR, "before", expires_at=4_000_000_000) is False
