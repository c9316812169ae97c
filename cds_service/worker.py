"""The gunicorn worker: threads, time limits on reading a request, and exit when the master dies.

gunicorn's threaded worker keeps many requests in flight per process, so a hook waiting on a FHIR
server holds one thread, never the process (the app runs in the process's turn, see
`cds_service.turns`). It waits up to 5 s for a connection's first byte
without holding a thread, but once a request has begun it reads the rest with no time limit: a
client that sends one header line every few seconds keeps a thread for minutes. Here every
connection's socket carries a deadline: the request line and headers must arrive within
`header_timeout_seconds` of the first read, the body within `body_timeout_seconds` after the
headers. Past it the reads end, the client gets `408 Request Timeout` and the connection closes.

The cyclic garbage collector is tuned for this load (`prepare_heap_for_fork`, `tune_worker_gc`):
the objects built at start (the app, the model, the libraries) are frozen in the master before the
workers fork, so that no collection walks them (nor copies their pages into each worker), and a
worker starts a collection after 50,000 new container objects instead of 700. A hook parses some
10^5 dicts and lists of FHIR JSON, none of them in a cycle: at the default thresholds about six
collections ran per hook, walking the parsed JSON still in use, and now and then a full
collection walked the whole heap. Under wrk with complete prefetch (`benchmarks/prefetch_path.py`,
one run, interleaved) CPU per hook fell from 17.9 to 15.7 ms and p99 from 202 to 121 ms; garbage
cycles are still collected, at most 50,000 objects later. glibc's malloc, which gives each thread
that allocates at once an arena of its own (up to eight per core) and keeps each at its
high-water mark, is held to two arenas (`limit_malloc_arenas`): with both, a worker's RSS after
10,000 hooks is about 150 MiB and grew 3-4 % from the first 1,000 hooks, where the collector
tuning alone left 164-166 MiB and 5-7 % (`benchmarks/worker_memory.py`).

On Linux each worker also asks the kernel to send it SIGTERM when the master process dies
(PR_SET_PDEATHSIG), and on SIGTERM it closes its listening sockets at once, so a master killed
with SIGKILL leaves no worker holding the port: a restart can bind again while the orphaned
workers finish the hooks they were answering.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h
REQUEST_TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
WRITE_TIMEOUT_SECONDS = 10.0  # for a reply to leave: a client that reads nothing cannot hold us
# how long a thread that has answered on a kept-alive connection waits for the next request
# before handing the connection back to the poller (a client sending back to back is served
# without a trip through gunicorn's main loop)
KEEP_ALIVE_GRACE_SECONDS = 0.002
# a worker's collector thresholds (CPython's default: 700, 10, 10)
WORKER_GC_THRESHOLDS = (50_000, 20, 20)
M_ARENA_MAX = -8  # glibc malloc.h
MALLOC_ARENAS = 2  # glibc's default: 8 per core, each kept at its high-water mark


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library (Linux), looked up once: finding it runs ldconfig."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def prepare_heap_for_fork() -> None:
    """Collect once, then freeze every object alive now: no later collection examines them."""
    gc.collect()
    gc.freeze()


def tune_worker_gc() -> None:
    """Collect garbage cycles after WORKER_GC_THRESHOLDS allocations, not CPython's default."""
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Let glibc's malloc keep at most `arenas` arenas in this process (Linux; else nothing)."""
    if not sys.platform.startswith("linux"):
        return
    if _libc().mallopt(M_ARENA_MAX, arenas) != 1:
        logger.warning("could not limit malloc arenas to %d", arenas)


class DeadlineSocket(socket.socket):
    """A client connection whose reads end (as if the client closed) once a deadline passes."""

    read_budget: float | None = None  # seconds, counted from the next read
    read_deadline: float | None = None  # a time.monotonic() value
    read_expired = False
    replied = False  # whether anything was sent since the last `read_within`

    @classmethod
    def adopt(cls, sock: socket.socket) -> DeadlineSocket:
        """This class holding the connection of `sock` (which is detached)."""
        blocking = sock.getblocking()
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.setblocking(blocking)
        return adopted

    def read_within(self, seconds: float, *, from_first_read: bool = False) -> None:
        """Reads must be done within `seconds` of now (or of the next read)."""
        self.read_budget = seconds if from_first_read else None
        self.read_deadline = None if from_first_read else time.monotonic() + seconds
        self.read_expired = self.replied = False

    def read_freely(self) -> None:
        """No deadline on reads (between requests, when the poller watches the connection)."""
        self.read_budget = self.read_deadline = None

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self._arm_for_read():
            return b""
        try:
            return super().recv(size, flags)
        except TimeoutError:
            self.read_expired = True
            return b""

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if not self._arm_for_read():
            return 0
        try:
            return super().recv_into(buffer, size, flags)
        except TimeoutError:
            self.read_expired = True
            return 0

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.replied = True
        self.settimeout(WRITE_TIMEOUT_SECONDS)
        super().sendall(data, flags)

    def _arm_for_read(self) -> bool:
        """Set the socket timeout to what is left; False (and expired) when nothing is left."""
        if self.read_budget is not None:
            self.read_deadline = time.monotonic() + self.read_budget
            self.read_budget = None
        if self.read_deadline is None:
            return True
        left = self.read_deadline - time.monotonic()
        if left <= 0:
            self.read_expired = True
            return False
        self.settimeout(left)
        return True


class HookWorker(ThreadWorker):
    """gunicorn's threaded worker with request read deadlines and exit on the master's death."""

    header_timeout_seconds = 10.0
    body_timeout_seconds = 30.0

    def init_process(self) -> None:
        exit_with_parent(self.ppid)
        tune_worker_gc()
        limit_malloc_arenas()
        super().init_process()

    def handle(self, conn: Any) -> Any:
        """Serve the requests `conn` sends back to back, each within its read deadlines.

        After an answer on a kept-alive connection, a next request that arrives within
        KEEP_ALIVE_GRACE_SECONDS is served by this thread at once; otherwise the connection goes
        back to gunicorn's poller as usual.
        """
        while True:
            keep_alive = self._handle_one(conn)
            if keep_alive is not True or not self.alive:
                return keep_alive
            buffered = conn.parser.unreader.buf.getvalue()
            if not buffered and not _readable_within(conn.sock, KEEP_ALIVE_GRACE_SECONDS):
                return keep_alive

    def _handle_one(self, conn: Any) -> Any:
        """Serve one request of `conn` with its header deadline; answer a timeout with 408."""
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket.adopt(conn.sock)
        sock: DeadlineSocket = conn.sock
        sock.read_within(self.header_timeout_seconds, from_first_read=True)
        try:
            keep_alive = super().handle(conn)
        finally:
            sock.read_freely()
        if sock.read_expired:
            self._request_timed_out(sock)
            return False
        return keep_alive

    def handle_request(self, req: Any, conn: Any) -> Any:
        """The headers have arrived: the body gets its own deadline."""
        conn.sock.read_within(self.body_timeout_seconds)
        return super().handle_request(req, conn)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop as gunicorn does, and give up the listening sockets at once."""
        super().handle_exit(sig, frame)
        self.method_queue.defer(self._stop_listening)

    def _stop_listening(self) -> None:
        self.set_accept_enabled(False)
        for listener in self.sockets:
            listener.close()

    def _request_timed_out(self, sock: DeadlineSocket) -> None:
        """408 unless a reply has begun (a body cut off at its deadline was answered 400)."""
        logger.warning(
            "closed a connection whose request did not arrive within its time limit "
            "(headers %g s, body %g s)",
            self.header_timeout_seconds,
            self.body_timeout_seconds,
        )
        if sock.replied:
            return
        with contextlib.suppress(OSError):  # the client may have gone
            sock.settimeout(1.0)
            socket.socket.sendall(sock, REQUEST_TIMEOUT_REPLY)


def _readable_within(sock: socket.socket, seconds: float) -> bool:
    """True when `sock` has data (or has closed) within `seconds`."""
    try:
        readable, _, _ = select.select([sock], [], [], seconds)
    except (OSError, ValueError):
        return False
    return bool(readable)


def hook_worker_class(header_timeout_seconds: float, body_timeout_seconds: float) -> type:
    """A `HookWorker` with these read deadlines (gunicorn takes a class as `worker_class`)."""
    return type(
        "HookWorker",
        (HookWorker,),
        {
            "header_timeout_seconds": header_timeout_seconds,
            "body_timeout_seconds": body_timeout_seconds,
            "__module__": __name__,
        },
    )


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux for SIGTERM when the parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    if _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("could not ask to be stopped with the master (errno %d)", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the master died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
