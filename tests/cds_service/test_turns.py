"""Turns: one request at a time runs in a worker process, first come first served, and a thread
waiting on the network gives its turn away."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import pytest

from cds_service.turns import TakeTurns, Turns, buffer_body

SETTLE_SECONDS = 0.2  # time for a thread that is not blocked to run ahead, if it could


def _run(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args)
    thread.start()
    return thread


def test_the_turn_is_handed_to_waiting_threads_in_the_order_they_came() -> None:
    turns = Turns()
    order: list[int] = []
    turns.take()
    waiting = []
    for number in range(5):
        waiting.append(_run(lambda n=number: (turns.take(), order.append(n), turns.give())))
        while len(turns._queue) <= number:  # each is queued before the next starts
            time.sleep(0.001)
    turns.give()
    for thread in waiting:
        thread.join(timeout=10)

    assert order == [0, 1, 2, 3, 4]
    assert turns.holder is None


def test_a_second_thread_waits_until_the_turn_is_given() -> None:
    turns = Turns()
    entered = threading.Event()
    with turns.turn():
        other = _run(lambda: (turns.take(), entered.set(), turns.give()))
        time.sleep(SETTLE_SECONDS)
        waited = not entered.is_set()
    other.join(timeout=10)

    assert waited and entered.is_set()


def test_released_lets_another_thread_run_and_takes_the_turn_back() -> None:
    turns = Turns()
    ran_while_released = threading.Event()
    with turns.turn():
        with turns.released():
            other = _run(lambda: (turns.take(), ran_while_released.set(), turns.give()))
            assert ran_while_released.wait(10)
            other.join(timeout=10)
        assert turns.held_here()
    assert turns.holder is None


def test_released_does_nothing_in_a_thread_without_the_turn() -> None:
    turns = Turns()
    with turns.released():
        assert turns.holder is None
    assert turns.holder is None


def test_a_thread_holding_the_turn_may_enter_it_again() -> None:
    turns = Turns()
    with turns.turn(), turns.turn():
        assert turns.held_here()
    assert turns.holder is None


def test_the_turn_is_given_back_when_the_block_raises() -> None:
    turns = Turns()
    with pytest.raises(RuntimeError), turns.turn():
        raise RuntimeError("boom")
    assert turns.holder is None


class _TricklingBody(io.RawIOBase):
    """A request body that arrives only when the test lets it."""

    def __init__(self, data: bytes, arrived: threading.Event) -> None:
        self.data, self.arrived = data, arrived

    def read(self, size: int = -1) -> bytes:
        self.arrived.wait(10)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def _environ(body: io.RawIOBase | io.BytesIO, length: str | None = None, **extra) -> dict:
    environ = {"wsgi.input": body, "REQUEST_METHOD": "POST", **extra}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    return environ


@pytest.fixture
def turns() -> Iterator[Turns]:
    yield Turns()


def test_the_body_is_read_before_queueing_for_the_turn(turns: Turns) -> None:
    arrived = threading.Event()
    seen: list[bytes] = []

    def app(environ, start_response):
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"ok"]

    middleware = TakeTurns(app, max_body_bytes=1000, turns=turns)
    environ = _environ(_TricklingBody(b'{"a": 1}', arrived), "8")
    caller = _run(middleware, environ, lambda *args: None)
    time.sleep(SETTLE_SECONDS)
    turn_free_while_reading = turns.holder is None
    arrived.set()
    caller.join(timeout=10)

    assert turn_free_while_reading
    assert seen == [b'{"a": 1}']


def test_the_app_runs_in_the_turn_and_its_answer_is_closed(turns: Turns) -> None:
    held: list[bool] = []

    class Answer(list):
        closed = False

        def close(self) -> None:
            Answer.closed = True

    def app(environ, start_response):
        held.append(turns.held_here())
        return Answer([b"a", b"b"])

    body = TakeTurns(app, max_body_bytes=10, turns=turns)(_environ(io.BytesIO()), None)

    assert body == [b"a", b"b"] and held == [True] and Answer.closed
    assert turns.holder is None


def test_a_declared_length_over_the_limit_is_left_unread() -> None:
    stream = io.BytesIO(b"x" * 50)
    environ = _environ(stream, "50")
    buffer_body(environ, max_body_bytes=10)

    assert environ["wsgi.input"] is stream and stream.tell() == 0


def test_a_body_without_a_length_is_cut_one_byte_past_the_limit() -> None:
    environ = _environ(io.BytesIO(b"x" * 50), None, **{"wsgi.input_terminated": True})
    buffer_body(environ, max_body_bytes=10)

    assert environ["wsgi.input"].read() == b"x" * 11


def test_a_short_body_stays_short() -> None:
    environ = _environ(io.BytesIO(b"abc"), "10")
    buffer_body(environ, max_body_bytes=100)

    assert environ["wsgi.input"].read() == b"abc"
