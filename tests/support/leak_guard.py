"""Session-wide guard: no JWT or FHIR access token a test sent may appear in any log or response.

Every token made by `tests.support.tokens` is registered here automatically; a test that puts its
own `access_token` in `fhirAuthorization` registers it with `register_secret` (or builds it with
`tests.support.tokens.fhir_authorization`). The root logger is captured at DEBUG for the whole
session, and every Flask test-client response body is searched as it arrives.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from dataclasses import dataclass, field

_MIN_SECRET_LENGTH = 8


def _record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a log record could reveal: message, raw args, exception and stack text."""
    texts = [str(record.msg)]
    with contextlib.suppress(Exception):  # a malformed record must not hide its arguments
        texts.append(record.getMessage())
    if record.args:
        texts.append(repr(record.args))
    if record.exc_info and record.exc_info[1] is not None:
        texts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    return texts


@dataclass
class LeakGuard:
    """Registered secrets plus a logging handler that keeps every record's text."""

    secrets: set[str] = field(default_factory=set)
    records: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def register_secret(self, value: str) -> str:
        """Remember `value` as something that must never be logged or echoed; returns it."""
        if len(value) < _MIN_SECRET_LENGTH:
            raise ValueError("secrets shorter than 8 characters would match ordinary text")
        with self._lock:
            self.secrets.add(value)
        return value

    def capture(self, record: logging.LogRecord) -> None:
        """Keep the text of one log record."""
        joined = "\n".join(_record_texts(record))
        with self._lock:
            self.records.append((record.name, joined))

    def handler(self) -> logging.Handler:
        """A DEBUG-level logging handler feeding this guard."""
        guard = self

        class _Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                guard.capture(record)

        return _Capture(level=logging.DEBUG)

    def leaks_in_logs(self, since: int = 0) -> list[str]:
        """Descriptions of captured records (from index `since`) that contain a secret."""
        with self._lock:
            records = self.records[since:]
            secrets = tuple(self.secrets)
        return [
            f"logger {name!r} logged a registered secret ({_redacted(secret)})"
            for name, text in records
            for secret in secrets
            if secret in text
        ]

    def leaks_in_text(self, text: str) -> list[str]:
        """The registered secrets (redacted) that appear in `text`."""
        with self._lock:
            secrets = tuple(self.secrets)
        return [_redacted(secret) for secret in secrets if secret in text]


def _redacted(secret: str) -> str:
    """A recognisable but harmless stand-in for a secret in failure messages."""
    return f"{secret[:6]}…({len(secret)} chars)"


SESSION_GUARD = LeakGuard()


def register_secret(value: str) -> str:
    """Register `value` with the session guard; returns it for inline use."""
    return SESSION_GUARD.register_secret(value)
