"""Issue 9, row 2: clients that send their request slowly cannot starve the service.

A request's line and headers must arrive within `header_timeout_seconds` of its first byte and its
body within `body_timeout_seconds` after the headers; a slow connection holds one thread of one
worker meanwhile, never a whole worker.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.served import LOOPBACK, Served, serve

pytestmark = pytest.mark.slow  # served instances and clients that take seconds on purpose

DRIP_INTERVAL_SECONDS = 0.5
HEADER_LINES = 40  # 20 s of headers at the drip interval: far longer than the limit


@dataclass
class Drip:
    """What a slow client saw: the reply it got (if any) and how much it had left to send."""

    reply: bytes
    closed_by_server: bool
    lines_unsent: int


def drip(port: int, lines: list[bytes], interval: float) -> Drip:
    """Send `lines` one per `interval`, reading whatever the server answers meanwhile."""
    reply = b""
    with socket.create_connection((LOOPBACK, port), timeout=30) as connection:
        for sent, line in enumerate(lines):
            try:
                connection.sendall(line)
            except OSError:  # reset: the server has closed the connection
                return Drip(reply, True, len(lines) - sent)
            readable, _, _ = select.select([connection], [], [], interval)
            if readable:
                try:
                    chunk = connection.recv(4096)
                except OSError:
                    chunk = b""
                reply += chunk
                if not chunk:
                    return Drip(reply, True, len(lines) - sent - 1)
    return Drip(reply, False, 0)


def header_lines(count: int) -> list[bytes]:
    """A GET whose request line and headers come one line at a time (never the blank line)."""
    return [b"GET /healthz HTTP/1.1\r\n", b"Host: localhost\r\n"] + [
        f"X-Slow-{number}: {'x' * 20}\r\n".encode() for number in range(count)
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two workers as in production, with short request read limits for the test's sake."""
    folder = tmp_path_factory.mktemp("slow-clients")
    with serve(folder, workers=2, header_timeout_seconds=2, body_timeout_seconds=2) as running:
        yield running


def test_two_clients_dripping_headers_do_not_block_health_checks(served: Served) -> None:
    slow = [
        threading.Thread(target=drip, args=(served.port, header_lines(12), DRIP_INTERVAL_SECONDS))
        for _ in range(2)
    ]
    for thread in slow:
        thread.start()
    time.sleep(DRIP_INTERVAL_SECONDS * 2)  # both have begun their requests
    statuses = [
        requests.get(f"{served.base_url}/healthz", timeout=10).status_code for _ in range(10)
    ]
    dripping = [thread.is_alive() for thread in slow]
    for thread in slow:
        thread.join(timeout=60)

    assert statuses == [200] * 10
    assert dripping == [True, True], "the slow clients must still have been sending"


def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closes(
    served: Served,
) -> None:
    result = drip(served.port, header_lines(HEADER_LINES), DRIP_INTERVAL_SECONDS)

    assert result.closed_by_server
    assert result.reply.startswith(b"HTTP/1.1 408")
    assert result.lines_unsent > 0


def test_a_body_that_does_not_arrive_in_time_is_cut_off(served: Served) -> None:
    body_bytes = 4000
    head = (
        f"POST /cds-services/picu-immune-endotype HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {served.token()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n"
    ).encode()
    pieces = [head] + [b" " * 100] * (body_bytes // 100)

    result = drip(served.port, pieces, DRIP_INTERVAL_SECONDS / 2)

    assert result.closed_by_server
    assert result.lines_unsent > 0
    status = result.reply.split(b" ", 2)[1] if result.reply else b""
    assert status in (b"400", b"408")


def test_one_thread_held_by_a_slow_client_is_freed_at_the_header_limit(tmp_path: Path) -> None:
    with (
        serve(tmp_path, workers=1, threads=1, header_timeout_seconds=2) as single,
        ThreadPoolExecutor(1) as client,
    ):
        slow = client.submit(drip, single.port, header_lines(HEADER_LINES), DRIP_INTERVAL_SECONDS)
        time.sleep(DRIP_INTERVAL_SECONDS * 2)  # the only thread is reading the slow request
        health = requests.get(f"{single.base_url}/healthz", timeout=60)
        result = slow.result(timeout=60)

    assert health.status_code == 200
    assert result.closed_by_server and result.lines_unsent > 0, "cut off before it was done"
