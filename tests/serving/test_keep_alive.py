"""Requests on one kept-alive connection: back to back, pipelined, or after a pause."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.served import LOOPBACK, Served, serve

pytestmark = pytest.mark.slow  # a served instance

REQUEST = b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("keep-alive"), workers=1) as running:
        yield running


def _answers(connection: socket.socket, count: int) -> list[bytes]:
    """The status lines of the next `count` answers (each has a Content-Length body)."""
    data, statuses = b"", []
    while len(statuses) < count:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) < length:
                break
            statuses.append(head.split(b"\r\n", 1)[0])
            data = rest[length:]
    return statuses


def test_requests_back_to_back_after_a_pause_and_pipelined_are_all_answered(
    served: Served,
) -> None:
    with socket.create_connection((LOOPBACK, served.port), timeout=30) as connection:
        connection.sendall(REQUEST)
        first = _answers(connection, 1)
        connection.sendall(REQUEST)  # at once: served by the same thread
        second = _answers(connection, 1)
        time.sleep(0.5)  # past the grace: the connection is back with the poller
        connection.sendall(REQUEST)
        third = _answers(connection, 1)
        connection.sendall(REQUEST * 2)  # pipelined
        pipelined = _answers(connection, 2)

    assert first + second + third + pipelined == [b"HTTP/1.1 200 OK"] * 5
