"""The jti replay store is one SQLite file: a jti is accepted once across every worker process."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from cds_service import replay as replay_module
from cds_service.auth import Authenticator, Unauthorized
from cds_service.replay import ReplayStore
from cds_service.settings import Settings
from tests.auth.conftest import BASE, EHR, SERVICE, client_entry
from tests.support.tokens import SigningKey, make_token

WORKERS = 4


def test_first_use_is_accepted_and_the_second_refused(tmp_path: Path):
    store = ReplayStore(tmp_path / "jti.sqlite3")

    assert store.first_use(EHR, "jti-1", expires_at=2_000, now=1_000) is True
    assert store.first_use(EHR, "jti-1", expires_at=2_000, now=1_001) is False


def test_same_jti_from_different_issuers_is_not_a_replay(tmp_path: Path):
    store = ReplayStore(tmp_path / "jti.sqlite3")

    assert store.first_use(EHR, "shared", expires_at=2_000, now=1_000) is True
    assert store.first_use("https://other.example", "shared", expires_at=2_000, now=1_000) is True


def test_expired_entries_are_purged(tmp_path: Path):
    store = ReplayStore(tmp_path / "jti.sqlite3")
    store.first_use(EHR, "old", expires_at=1_100, now=1_000)
    store.first_use(EHR, "young", expires_at=5_000, now=1_000)

    store.first_use(EHR, "new", expires_at=5_000, now=2_000)

    assert store.count() == 2
    assert store.first_use(EHR, "young", expires_at=5_000, now=2_001) is False


def test_a_second_store_on_the_same_file_sees_the_first_ones_jti(tmp_path: Path):
    path = tmp_path / "state" / "jti.sqlite3"
    ReplayStore(path).first_use(EHR, "jti-x", expires_at=2_000, now=1_000)

    assert ReplayStore(path).first_use(EHR, "jti-x", expires_at=2_000, now=1_000) is False


def _record_in_worker(path: str, start: Any, results: Any) -> None:
    """Worker process: open the shared store, wait for the start signal, record one jti."""
    store = ReplayStore(Path(path))
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


def test_same_jti_raced_by_several_processes_is_recorded_exactly_once(tmp_path: Path):
    path = tmp_path / "jti.sqlite3"
    ReplayStore(path)

    outcomes = _race(_record_in_worker, str(path))

    assert sorted(outcomes) == [False] * (WORKERS - 1) + [True]


def test_one_token_sent_to_several_worker_processes_is_accepted_once(tmp_path: Path):
    key = SigningKey.generate("ES384")
    settings_fields = {
        "public_base_url": BASE,
        "state_dir": tmp_path / "state",
        "clients": [client_entry(key)],
    }
    token = make_token(key, iss=EHR, aud=SERVICE, extra_claims={"jti": "one-token-many-workers"})

    outcomes = _race(_verify_in_worker, settings_fields, token)

    assert outcomes.count("one-token-many-workers") == 1
    assert outcomes.count(None) == WORKERS - 1


def _record_with_inherited_store(store: ReplayStore, start: Any, results: Any) -> None:
    """Worker process: use the store object the parent built (and used) before the fork."""
    start.wait(timeout=30)
    results.put(store.first_use(EHR, "inherited-jti", expires_at=4_000_000_000))


def test_a_store_used_before_fork_records_a_raced_jti_once_across_children(tmp_path: Path):
    store = ReplayStore(tmp_path / "jti.sqlite3")
    assert store.first_use(EHR, "parent-jti", expires_at=4_000_000_000) is True

    outcomes = _race(_record_with_inherited_store, store)

    assert sorted(outcomes) == [False] * (WORKERS - 1) + [True]
    assert store.first_use(EHR, "inherited-jti", expires_at=4_000_000_000) is False
    assert store.first_use(EHR, "parent-jti", expires_at=4_000_000_000) is False


def test_a_jti_recorded_in_another_thread_is_refused_in_this_one(tmp_path: Path):
    store = ReplayStore(tmp_path / "jti.sqlite3")
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(store.first_use(EHR, "threaded", expires_at=2_000, now=1))
    )
    thread.start()
    thread.join(timeout=30)

    assert results == [True]
    assert store.first_use(EHR, "threaded", expires_at=2_000, now=2) is False


def test_a_store_refused_by_a_locked_file_accepts_again_once_the_lock_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(replay_module, "_BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "jti.sqlite3"
    store = ReplayStore(path)
    assert store.first_use(EHR, "before", expires_at=2_000, now=1) is True
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            store.first_use(EHR, "during", expires_at=2_000, now=2)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert store.first_use(EHR, "during", expires_at=2_000, now=3) is True
    assert store.first_use(EHR, "before", expires_at=2_000, now=3) is False
