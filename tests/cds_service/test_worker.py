"""The gunicorn worker's pieces: read deadlines on a connection, the options `serve` passes."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service import serve, worker
from cds_service.settings import load_settings
from cds_service.worker import WORKER_GC_THRESHOLDS, DeadlineSocket, HookWorker


@pytest.fixture
def pair() -> Iterator[tuple[DeadlineSocket, socket.socket]]:
    """A connected pair: our end as a DeadlineSocket, and the client's end."""
    ours, theirs = socket.socketpair()
    adopted = DeadlineSocket.adopt(ours)
    yield adopted, theirs
    adopted.close()
    theirs.close()


def test_reads_within_the_deadline_return_the_data(pair) -> None:
    ours, theirs = pair
    ours.read_within(5.0)
    theirs.sendall(b"GET / HTTP/1.1\r\n")

    assert ours.recv(100) == b"GET / HTTP/1.1\r\n"
    assert not ours.read_expired


def test_a_read_past_the_deadline_ends_as_if_the_client_had_closed(pair) -> None:
    ours, theirs = pair
    ours.read_within(0.05)

    assert ours.recv(100) == b""
    assert ours.read_expired


def test_recv_into_obeys_the_deadline_too(pair) -> None:
    ours, theirs = pair
    ours.read_within(0.05)
    buffer = bytearray(16)

    assert ours.recv_into(buffer) == 0
    assert ours.read_expired


def test_a_deadline_from_the_first_read_starts_when_reading_starts(pair) -> None:
    ours, theirs = pair
    ours.read_within(0.2, from_first_read=True)
    assert ours.read_deadline is None
    theirs.sendall(b"x")

    assert ours.recv(1) == b"x"
    assert ours.read_deadline is not None


def test_reading_freely_has_no_deadline(pair) -> None:
    ours, theirs = pair
    ours.read_within(0.05)
    ours.read_freely()
    theirs.sendall(b"late")

    assert ours.recv(10) == b"late"
    assert not ours.read_expired


def test_sending_is_recorded_so_no_second_reply_follows(pair) -> None:
    ours, theirs = pair
    ours.read_within(1.0)
    assert not ours.replied
    ours.sendall(b"HTTP/1.1 200 OK\r\n\r\n")

    assert ours.replied
    assert theirs.recv(100).startswith(b"HTTP/1.1 200")


def test_adopting_keeps_the_connection_and_its_blocking_mode() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    adopted = DeadlineSocket.adopt(ours)
    try:
        assert ours.fileno() == -1  # detached: the adopted socket owns the connection
        assert not adopted.getblocking()
        theirs.sendall(b"ok")
        adopted.setblocking(True)
        assert adopted.recv(2) == b"ok"
    finally:
        adopted.close()
        theirs.close()


def test_serve_runs_threaded_workers_with_the_configured_read_limits(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\nthreads = 12\n'
        "header_timeout_seconds = 3.5\nbody_timeout_seconds = 7\n"
    )
    options = serve.gunicorn_options(load_settings(config))
    worker = options["worker_class"]

    assert issubclass(worker, HookWorker)
    assert (worker.header_timeout_seconds, worker.body_timeout_seconds) == (3.5, 7.0)
    assert options["threads"] == 12
    assert options["control_socket_disable"] is True


def test_a_worker_starts_with_the_tuned_collector_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "exit_with_parent", lambda ppid: None)
    monkeypatch.setattr(worker.ThreadWorker, "init_process", lambda self: None)
    monkeypatch.setattr(worker, "limit_malloc_arenas", lambda: None)  # would stay for the session
    hook_worker = object.__new__(HookWorker)
    hook_worker.ppid = 1
    default = gc.get_threshold()
    try:
        hook_worker.init_process()
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS != default
    finally:
        gc.set_threshold(*default)


ARENA_PROBE = """
import ctypes, ctypes.util, re, sys, tempfile, threading
from cds_service.worker import limit_malloc_arenas
if sys.argv[1] == "limited":
    limit_malloc_arenas(2)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()  # all eight threads allocate at once
    blocks = [libc.malloc(50_000) for _ in range(50)]
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(len(re.findall(r"<heap nr=", open(report.name).read())))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc arenas")
def test_the_arena_limit_holds_threads_allocating_at_once_to_two_malloc_arenas() -> None:
    def arenas(mode: str) -> int:
        probe = [sys.executable, "-c", ARENA_PROBE, mode]
        return int(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)

    assert arenas("default") > 2
    assert arenas("limited") <= 2
