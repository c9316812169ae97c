"""Log lines nobody can forge: control characters escaped everywhere, the audit trail as JSON lines.

Request paths, JWT claims, OperationOutcome codes and every other value a client or a server
sends may hold CR, LF or other line breaks. Every handler `picu-endotype serve` installs (ours and
gunicorn's error and access logs) escapes C0 and C1 control characters and the Unicode line and
paragraph separators (and bidirectional overrides) in the whole line, so one record is one line.
The audit logger writes one JSON object per line: no value can start a new record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gunicorn import glogging

AUDIT_LOGGER = "picu_endotype.audit"
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with every control or line-breaking character written as a visible escape."""
    return _UNSAFE.sub(_escaped, text)


def quote_field(text: str) -> str:
    """A value for a quoted log field: backslash and quote escaped, control characters too."""
    return escape_control(text.replace("\\", "\\\\").replace('"', '\\"'))


class EscapingFormatter(logging.Formatter):
    """Formats with `inner` (or its own format), then escapes the whole line, traceback included."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        *,
        inner: logging.Formatter | None = None,
    ) -> None:
        super().__init__(fmt, datefmt)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return escape_control(text)


class AuditFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger and the record's audit fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "audit", None)
        if not isinstance(fields, Mapping):
            fields = {"message": record.getMessage()}
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            **fields,
        }
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)


def audit(logger: logging.Logger, fields: Mapping[str, Any]) -> None:
    """Log one audit record: its message is the JSON text, its fields travel with it."""
    text = json.dumps(dict(fields), ensure_ascii=True, separators=(",", ":"), default=str)
    logger.info("%s", text, extra={"audit": dict(fields)})


def configure_logging(level: str) -> None:
    """Escaped lines on stderr, and the audit logger as JSON lines, like `logging.basicConfig`.

    As with basicConfig, nothing is installed when the root logger already has a handler (an
    embedding application's, or a test runner's); only the level is set then.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if root.handlers:
        return
    line_handler = logging.StreamHandler(sys.stderr)
    line_handler.setFormatter(EscapingFormatter(LINE_FORMAT))
    root.addHandler(line_handler)
    audit_handler = logging.StreamHandler(sys.stderr)
    audit_handler.setFormatter(AuditFormatter())
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    audit_logger.addHandler(audit_handler)
    audit_logger.propagate = False


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with every access-log field quoted and every line escaped."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            if not isinstance(handler.formatter, EscapingFormatter):
                handler.setFormatter(EscapingFormatter(inner=handler.formatter))

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: quote_field(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }
