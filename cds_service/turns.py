"""Turns: one request at a time runs Python code in a worker process; waiting gives the turn away.

A worker process runs many threads so that hooks waiting on a FHIR server, a key-set URL or a
slow client hold a thread each, never the process. Python runs one thread at a time anyway, and
threads that compete for the interpreter all finish late (every lock and every socket read costs
a wait for the interpreter). So a request's Python code runs in its process's turn, handed on
first come, first served, and a thread gives its turn away while it waits on the network
(`released()`). Requests that need no network then run one after another, as in a single-threaded
worker, and a hook waiting on FHIR never delays another.

`TakeTurns` is the WSGI middleware: it reads the request body before queueing for a turn (a slow
client holds only its own thread), runs the app in the turn, and hands the answer back for
gunicorn to send after the turn.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

READ_CHUNK_BYTES = 64 * 1024


class Turns:
    """A first-come-first-served turn, handed directly from one thread to the next in line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None  # thread ident
        self._queue: deque[tuple[int, threading.Lock]] = deque()

    @property
    def holder(self) -> int | None:
        """The thread holding the turn, if any."""
        return self._holder

    def held_here(self) -> bool:
        """True when the calling thread holds the turn."""
        return self._holder == threading.get_ident()

    def take(self) -> None:
        """Wait for the turn (no wait when it is free); the caller must `give()` it back."""
        me = threading.get_ident()
        with self._lock:
            if self._holder is None:
                self._holder = me
                return
            baton = threading.Lock()
            baton.acquire()
            self._queue.append((me, baton))
        baton.acquire()  # released by `give()` once the turn is ours

    def give(self) -> None:
        """Hand the turn to the next thread in line, or free it."""
        with self._lock:
            if self._queue:
                self._holder, baton = self._queue.popleft()
                baton.release()
            else:
                self._holder = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Run the block in the turn (at once if this thread holds it already)."""
        if self.held_here():
            yield
            return
        self.take()
        try:
            yield
        finally:
            self.give()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Give the turn away for the block (a network wait), then queue for it again.

        Does nothing in a thread that does not hold the turn (tests, commands, query threads).
        """
        if not self.held_here():
            yield
            return
        self.give()
        try:
            yield
        finally:
            self.take()

    def reset_after_fork(self) -> None:
        """A forked child has only the forking thread: nobody holds the turn."""
        self.__init__()  # type: ignore[misc]


TURNS = Turns()
os.register_at_fork(after_in_child=TURNS.reset_after_fork)


def released() -> contextlib.AbstractContextManager[None]:
    """This process's turn given away for the block, if the calling thread holds it."""
    return TURNS.released()


class TakeTurns:
    """WSGI middleware: read the body, then run the app in the process's turn."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], max_body_bytes: int, turns: Turns = TURNS
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.turns = turns

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        buffer_body(environ, self.max_body_bytes)
        with self.turns.turn():
            answer = self.app(environ, start_response)
            try:
                return list(answer)
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()


def buffer_body(environ: dict[str, Any], max_body_bytes: int) -> None:
    """Read the request body now (one byte past the limit at most) and put it back as a buffer.

    A declared length over the limit is left for the app to refuse (413) without reading; a body
    without a declared length is cut one byte past the limit, which the app then refuses too.
    """
    declared = environ.get("CONTENT_LENGTH") or ""
    length = int(declared) if declared.isdigit() else None
    if length == 0 or (length is not None and length > max_body_bytes):
        return
    if length is None and not environ.get("wsgi.input_terminated"):
        return  # no body a WSGI app could read
    stream = environ["wsgi.input"]
    wanted = length if length is not None else max_body_bytes + 1
    chunks, read = [], 0
    while read < wanted:
        chunk = stream.read(min(READ_CHUNK_BYTES, wanted - read))
        if not chunk:
            break
        chunks.append(chunk)
        read += len(chunk)
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
