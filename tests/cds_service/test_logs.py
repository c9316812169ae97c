"""Log lines cannot be forged: every control or line-breaking character is escaped."""

from __future__ import annotations

import io
import json
import logging
import sys
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from cds_service.logs import (
    AuditFormatter,
    EscapingFormatter,
    GunicornLogger,
    audit,
    escape_control,
    quote_field,
)

FORGERIES = [
    "x\nFORGED picu_endotype.audit hook",
    "x\r\nFORGED",
    "x\rFORGED",
    "x\u2028FORGED",
    "x\u2029FORGED",
    "x\x85FORGED",
    "x\x0bFORGED\x0cagain",
    "x\x1b[2KFORGED",
    "x\u202eFORGED",
]


@pytest.mark.parametrize("forged", FORGERIES)
def test_escaped_text_has_no_line_break_or_control_character(forged: str) -> None:
    escaped = escape_control(forged)

    assert escaped.splitlines() == [escaped]
    assert escaped.isprintable()
    assert escaped.startswith("x\\") and "FORGED" in escaped


def test_line_feed_carriage_return_and_tab_read_as_their_usual_escapes() -> None:
    assert escape_control("a\nb\rc\td\x00e\u2028") == "a\\nb\\rc\\td\\x00e\\u2028"


def test_quoted_fields_escape_quotes_and_backslashes_first() -> None:
    assert quote_field('/x" 200 0 1ms\n') == '/x\\" 200 0 1ms\\n'
    assert quote_field("a\\nb") == "a\\\\nb"


def _formatted(formatter: logging.Formatter, message: str, *args: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.logs.forging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


@pytest.mark.parametrize("forged", FORGERIES)
def test_an_interpolated_value_stays_on_its_record_line(forged: str) -> None:
    output = _formatted(EscapingFormatter("%(levelname)s %(message)s"), "jti=%s", forged)

    assert output.count("\n") == 1 and output.endswith("\n")
    assert not any(line.startswith("FORGED") for line in output.split("\n"))


def test_a_traceback_is_escaped_onto_its_record_line() -> None:
    formatter = EscapingFormatter("%(message)s")
    try:
        raise ValueError("bad\nFORGED")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    text = formatter.format(record)

    assert "\n" not in text and "Traceback" in text and "bad\\nFORGED" in text


def test_the_audit_record_is_one_json_object_whatever_its_values_hold() -> None:
    logger = logging.getLogger("tests.logs.audit")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AuditFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        audit(logger, {"event": "hook", "hookInstance": 'FORGED\n{"event":"hook"}\u2028'})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "hook" and record["logger"] == "tests.logs.audit"
    assert record["hookInstance"] == 'FORGED\n{"event":"hook"}\u2028'
    assert lines[0].isascii()


def test_gunicorn_access_atoms_are_quoted_and_escaped() -> None:
    logger = GunicornLogger(_gunicorn_config())
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/cds-services/x%0aFORGED",
        "PATH_INFO": '/cds-services/x\nFORGED" 200',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="404 NOT FOUND", sent=10, headers=[])
    request_time = SimpleNamespace(seconds=0, microseconds=1000)

    atoms = logger.atoms(response, SimpleNamespace(headers=[]), environ, request_time)

    assert atoms["U"] == '/cds-services/x\\nFORGED\\" 200'
    assert all("\n" not in value for value in atoms.values() if isinstance(value, str))


def _gunicorn_config() -> Config:
    """gunicorn's configuration with both logs to stderr, as `picu-endotype serve` sets them."""
    config = Config()
    config.set("accesslog", "-")
    config.set("errorlog", "-")
    return config


def test_gunicorn_handlers_escape_every_line() -> None:
    logger = GunicornLogger(_gunicorn_config())

    handlers = [*logger.error_log.handlers, *logger.access_log.handlers]

    assert handlers
    assert all(isinstance(handler.formatter, EscapingFormatter) for handler in handlers)
