"""A small synchronous FHIR client: one transport seam, bounded replies, deadlines, safe paging.

Every reply is read by `fetch_json`, which is also the JWKS fetcher's transport: the body is
streamed and its decoded size counted against a cap (a decompression bomb stops at the cap, not
after unpacking), each call has a total time limit (not only a per-read timeout: a server that
drips one byte at a time is cut off), the JSON nesting depth is limited, and a `CallGuard` stops
the calls of one task at its deadline by shutting down their sockets, so no thread is left
reading after the hook has answered.

Every failure leaves this module as one of these errors (all raised by `_send` or the Bundle
check), so callers catch at whatever level they need:

    FhirError                 any failure to obtain a FHIR resource
     ├── FhirUnauthorized     401 or 403: the access token was refused
     ├── FhirNotFound         404 or 410 on a search (a read answers None instead)
     ├── FhirUnavailable      5xx, 429, connection refused, DNS, TLS, proxy, broken transfer
     ├── FhirTimeout          a call timed out, or the overall deadline has passed
     └── FhirBadResponse      a redirect, another 4xx, a body that is not JSON or not the
          │                   expected resource (a Bundle for a search), or a searchset
          │                   carrying an error OperationOutcome (its results may be partial)
          ├── FhirReplyTooLarge   the decoded body is larger than the reply cap
          └── FhirReplyTooDeep    the JSON nests deeper than the depth limit

Messages carry the HTTP status and the URL path with resource ids replaced by `{id}`; they never
carry the access token, a query string or any other patient data. Full URLs are logged at DEBUG
only, and the token never.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from fhir_mappings.limits import MIB, JsonTooDeep, loads_bounded

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_CHUNK_BYTES = 64 * 1024  # decoded bytes taken per read; the deadline is checked between reads


@dataclass(frozen=True)
class ReplyLimits:
    """What one reply may be: its decoded size in bytes and its JSON nesting depth."""

    max_bytes: int = 4 * MIB
    max_depth: int = 64


class FhirError(Exception):
    """A FHIR resource could not be obtained; `status` and `path` are safe to log and show."""

    def __init__(self, reason: str, *, path: str, status: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.status = status
        shown_status = f" -> {status}" if status is not None else ""
        super().__init__(f"{reason}: GET {path}{shown_status}")


class FhirUnauthorized(FhirError):
    """The FHIR server refused the access token (401) or the access (403)."""


class FhirNotFound(FhirError):
    """The FHIR server answered 404 to a search."""


class FhirUnavailable(FhirError):
    """The FHIR server could not be reached or answered with a server error."""


class FhirTimeout(FhirError):
    """A call timed out, or the overall deadline passed before a call could start."""


class FhirCancelled(FhirTimeout):
    """The call was stopped because another call of the same task failed first."""


CANCELLED = "stopped: another FHIR call of this task failed"


class FhirBadResponse(FhirError):
    """The FHIR server answered with something we cannot use."""


class FhirReplyTooLarge(FhirBadResponse):
    """The decoded reply is larger than the cap (reading stopped at the cap)."""


class FhirReplyTooDeep(FhirBadResponse):
    """The reply's JSON nests deeper than the limit."""


# Order matters: the first matching class wins (ConnectTimeout is both a Timeout and a
# ConnectionError; a read timeout while streaming the body arrives as a ConnectionError).
_REQUESTS_ERRORS: tuple[tuple[type[BaseException], type[FhirError], str], ...] = (
    (requests.Timeout, FhirTimeout, "FHIR server timed out"),
    (requests.ConnectionError, FhirUnavailable, "FHIR server unreachable"),
    (requests.exceptions.RetryError, FhirUnavailable, "FHIR server unreachable"),
    (requests.TooManyRedirects, FhirBadResponse, "FHIR server redirected"),
    (requests.exceptions.ChunkedEncodingError, FhirUnavailable, "FHIR response broken off"),
    (requests.exceptions.ContentDecodingError, FhirBadResponse, "FHIR response undecodable"),
    (requests.exceptions.InvalidJSONError, FhirBadResponse, "FHIR response is not JSON"),
    (requests.RequestException, FhirUnavailable, "FHIR request could not be made"),
    (urllib3.exceptions.HTTPError, FhirUnavailable, "FHIR request could not be made"),
)


_URLLIB3_ERRORS: tuple[tuple[type[BaseException], type[FhirError], str], ...] = (
    (urllib3.exceptions.TimeoutError, FhirTimeout, "FHIR server timed out"),
    (urllib3.exceptions.DecodeError, FhirBadResponse, "FHIR response undecodable"),
    (urllib3.exceptions.ProtocolError, FhirUnavailable, "FHIR response broken off"),
    (urllib3.exceptions.HTTPError, FhirUnavailable, "FHIR request could not be made"),
    (OSError, FhirUnavailable, "FHIR response broken off"),
)


def translate_exception(exc: BaseException, path: str) -> FhirError:
    """The FhirError for one `requests`, urllib3 or socket exception, without its message."""
    if isinstance(exc, requests.ConnectionError) and _is_read_timeout(exc):
        return FhirTimeout("FHIR server timed out", path=path)
    table = _REQUESTS_ERRORS if isinstance(exc, requests.RequestException) else _URLLIB3_ERRORS
    for exc_type, error_type, reason in table:
        if isinstance(exc, exc_type):
            return error_type(reason, path=path)
    raise TypeError(f"not a requests exception: {type(exc).__name__}") from exc


def _is_read_timeout(exc: requests.ConnectionError) -> bool:
    """True when requests reports a timeout while reading the body as a ConnectionError."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


def error_for_status(status: int, path: str) -> FhirError | None:
    """The FhirError an HTTP status means, or None for 2xx."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return FhirUnauthorized("FHIR server refused the access token", path=path, status=status)
    if status in (404, 410):
        return FhirNotFound("FHIR resource not found", path=path, status=status)
    if status == 429 or status >= 500:
        return FhirUnavailable("FHIR server unavailable", path=path, status=status)
    if 300 <= status < 400:
        return FhirBadResponse("FHIR server redirected", path=path, status=status)
    return FhirBadResponse("FHIR server rejected the request", path=path, status=status)


def safe_path(url: str) -> str:
    """The URL's path with every segment after a resource type replaced by `{id}`."""
    segments = urlsplit(url).path.split("/")
    shown = [
        "{id}" if index > 0 and _is_resource_type(segments[index - 1]) else segment
        for index, segment in enumerate(segments)
    ]
    return "/".join(shown) or "/"


def _is_resource_type(segment: str) -> bool:
    """`Patient` or `Observation`, but not a base path segment such as `FHIR` or `R4`."""
    return segment[:1].isupper() and segment.isalpha() and not segment.isupper()


def same_origin(url: str, base_url: str) -> bool:
    """True when `url` has the scheme, host, port and path prefix of `base_url`."""
    target, base = urlsplit(url), urlsplit(base_url)
    if target.username is not None or target.password is not None:
        return False
    if (target.scheme.lower(), _port(target)) != (base.scheme.lower(), _port(base)):
        return False
    if (target.hostname or "").lower() != (base.hostname or "").lower():
        return False
    if any(segment in (".", "..") for segment in unquote(target.path).split("/")):
        return False  # a server would resolve these to another path
    base_path = base.path.rstrip("/")
    return target.path == base_path or target.path.startswith(base_path + "/")


def _port(parts: Any) -> int | None:
    try:
        return parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None


# --- the transport: deadlines that hold, bounded replies --------------------------------------

_ACTIVE = threading.local()  # the call this thread is making, and its task's guard


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on `sock` (TLS sockets included) by shutting it down."""
    with contextlib.suppress(OSError):  # already closed, or never connected
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process that runs callbacks at their deadlines.

    Scheduling is a heap push and cancelling marks the entry, so a call pays microseconds for a
    total time limit that holds even while it waits for headers that a server drips.
    """

    def __init__(self) -> None:
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """A forked child has no watchdog thread: start anew on first use."""
        self._condition = threading.Condition()
        self._heap: list[list[Any]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, deadline: float, callback: Callable[[], None]) -> list[Any]:
        """Run `callback` at `deadline` (time.monotonic()) unless cancelled first."""
        entry = [deadline, next(self._order), callback]
        with self._condition:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fhir-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        """Do not run this entry's callback."""
        entry[2] = None

    def _run(self) -> None:
        while True:
            with self._condition:
                callback = self._next_due()
            callback()

    def _next_due(self) -> Callable[[], None]:
        while True:
            while self._heap and self._heap[0][2] is None:
                heapq.heappop(self._heap)
            if not self._heap:
                self._condition.wait()
                continue
            delay = self._heap[0][0] - time.monotonic()
            if delay > 0:
                self._condition.wait(delay)
                continue
            callback = heapq.heappop(self._heap)[2]
            if callback is not None:
                return callback


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset_after_fork)


class CallGuard:
    """The calls of one task (a hook's FHIR queries, one key-set fetch): a deadline and a stop.

    Each call checks the guard between reads. `cancel()` also shuts down the sockets of the calls
    in flight, so a read blocked on a server that stalls or drips headers returns at once and its
    thread is free again, instead of reading on after the hook has answered.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline  # a time.monotonic() value, or None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` has been called."""
        return self._cancelled.is_set()

    def expired(self) -> bool:
        """True when cancelled or past the deadline."""
        return self.cancelled or (self.deadline is not None and time.monotonic() >= self.deadline)

    def cancel(self) -> None:
        """Stop every call of this task: later checks fail and open sockets are shut down."""
        self._cancelled.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self.cancelled:
            _shutdown(sock)

    def _forget(self, sockets: list[socket.socket]) -> None:
        with self._lock:
            self._sockets.difference_update(sockets)


@dataclass
class _Call:
    """The sockets one call has used, and whether its own time limit has passed."""

    sockets: list[socket.socket] = field(default_factory=list)
    expired: bool = False

    def expire(self) -> None:
        """The call's time is up: shut down whatever it is reading from."""
        self.expired = True
        for sock in list(self.sockets):
            _shutdown(sock)


@contextlib.contextmanager
def _watched_call(guard: CallGuard, ends: float | None) -> Iterator[_Call]:
    """Within the block, this thread's connections belong to one call of `guard`'s task.

    The watchdog expires the call at `ends`; the guard's `cancel()` stops it at any time.
    """
    call = _Call()
    alarm = _WATCHDOG.schedule(ends, call.expire) if ends is not None else None
    _ACTIVE.guard, _ACTIVE.call = guard, call
    try:
        yield call
    finally:
        if alarm is not None:
            _WATCHDOG.cancel(alarm)
        _ACTIVE.guard, _ACTIVE.call = None, None
        guard._forget(call.sockets)


def _watch_current_call(sock: socket.socket | None) -> None:
    """Register a connection's socket with the call this thread is making, if any."""
    call: _Call | None = getattr(_ACTIVE, "call", None)
    if call is None or not isinstance(sock, socket.socket):
        return
    call.sockets.append(sock)
    _ACTIVE.guard._watch(sock)
    if call.expired:
        _shutdown(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection whose socket its call's guard can shut down while headers arrive."""

    def getresponse(self) -> Any:  # type: ignore[override]
        _watch_current_call(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection whose socket its call's guard can shut down while headers arrive."""

    def getresponse(self) -> Any:  # type: ignore[override]
        _watch_current_call(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection  # type: ignore[assignment]


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """The requests adapter whose connections (direct or through an HTTP proxy) are watched."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def watched_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) with watched adapters mounted for http and https."""
    session = session if session is not None else requests.Session()
    session.mount("https://", _WatchedAdapter())
    session.mount("http://", _WatchedAdapter())
    return session


def _time_left(guard: CallGuard, deadline: float | None, path: str) -> float | None:
    """Seconds until the earlier of the call's deadline and the guard's; FhirTimeout if none."""
    ends = [moment for moment in (deadline, guard.deadline) if moment is not None]
    left = min(ends) - time.monotonic() if ends else None
    if guard.cancelled:
        raise FhirCancelled(CANCELLED, path=path)
    if left is not None and left <= 0:
        raise FhirTimeout("deadline passed before the FHIR call", path=path)
    return left


def fetch_json(
    session: requests.Session,
    url: str,
    *,
    path: str,
    limits: ReplyLimits,
    guard: CallGuard,
    deadline: float | None = None,
    headers: Mapping[str, str] | None = None,
    auth: requests.auth.AuthBase | None = None,
) -> Any:
    """GET `url` and parse its JSON body, within the deadlines, the size cap and the depth limit.

    The one place replies are read and errors translated; `path` (never the URL) goes into errors.
    """
    left = _time_left(guard, deadline, path)
    ends = time.monotonic() + left if left is not None else None
    response: requests.Response | None = None
    try:
        with _watched_call(guard, ends) as call:
            response = session.get(
                url,
                headers=dict(headers or {}),
                auth=auth,
                timeout=left,
                allow_redirects=False,
                stream=True,
            )
            error = error_for_status(response.status_code, path)
            if error is not None:
                raise error
            body = _read_capped(response, path, limits.max_bytes, guard, ends)
            if guard.cancelled:  # a shut-down socket reads as a short body
                raise FhirCancelled(CANCELLED, path=path)
            if call.expired:
                raise FhirTimeout("FHIR call stopped at its deadline", path=path)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        logger.debug("GET %s failed: %s", url, type(exc).__name__)
        if guard.cancelled:
            raise FhirCancelled(CANCELLED, path=path) from None
        if guard.expired() or (ends is not None and time.monotonic() >= ends):
            raise FhirTimeout("FHIR call stopped at its deadline", path=path) from None
        raise translate_exception(exc, path) from None
    finally:
        if response is not None:
            response.close()  # a fully read reply's connection is already back in its pool
    logger.debug("GET %s -> %d (%d bytes)", url, response.status_code, len(body))
    return _parsed_json(body, path, limits.max_depth)


def _read_capped(
    response: requests.Response,
    path: str,
    max_bytes: int,
    guard: CallGuard,
    deadline: float | None,
) -> bytearray:
    """The decoded body, read a bounded piece at a time; stops at the cap or a deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(path, max_bytes)
    body = bytearray()
    while True:
        _time_left(guard, deadline, path)
        # read1 returns what one read brings (a dripping server cannot hold us inside a read)
        # and decompresses at most READ_CHUNK_BYTES at a time (a bomb is never unpacked whole)
        chunk = response.raw.read1(READ_CHUNK_BYTES, decode_content=True)
        if not chunk:
            return body
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(path, max_bytes)


def _too_large(path: str, max_bytes: int) -> FhirReplyTooLarge:
    return FhirReplyTooLarge(f"FHIR response larger than {max_bytes} bytes", path=path)


def _parsed_json(body: bytes | bytearray, path: str, max_depth: int) -> Any:
    """The JSON value of a reply body, or FhirBadResponse saying why there is none."""
    try:
        return loads_bounded(body, max_depth)
    except JsonTooDeep:
        raise FhirReplyTooDeep(
            f"FHIR response nested deeper than {max_depth} levels", path=path
        ) from None
    except ValueError:  # UnicodeDecodeError included
        raise FhirBadResponse("FHIR response is not JSON", path=path) from None


# Called after every FHIR call with its duration in seconds and its error (None on success); the
# web layer registers its metrics here. Observers must be quick and must not raise.
CallObserver = Callable[[float, "FhirError | None"], None]
CALL_OBSERVERS: list[CallObserver] = []


class _BearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer …`; never shows the token in its repr."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class _KeptSession(requests.Session):
    """A long-lived session that reads proxy and CA settings from the environment once per origin.

    `requests` scans the whole environment on every call for them (about 0.2 ms); a service reads
    its environment at start, so the first answer for a scheme and host is kept for later calls.
    """

    def __init__(self) -> None:
        super().__init__()
        # Requests for different patients and clients share the session: it keeps no cookies.
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}
        watched_session(self)

    def merge_environment_settings(
        self, url: str | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """The settings for `url`, from the per-origin cache when the call passes no overrides."""
        if proxies or verify is not None or cert is not None or not url:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        origin = (parts.scheme.lower(), parts.netloc.lower())
        settings = self._environment.get(origin)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            self._environment[origin] = settings
        chosen_stream = settings["stream"] if stream is None else stream
        return {**settings, "proxies": dict(settings["proxies"]), "stream": chosen_stream}


class _ThreadSessions:
    """One keep-alive `requests.Session` per thread and process, so connections are reused."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self) -> requests.Session:
        """This thread's session; a new one after fork, as sockets must not be shared."""
        held: tuple[int, requests.Session] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        session = _KeptSession()
        self._local.held = (os.getpid(), session)
        return session


_THREAD_SESSIONS = _ThreadSessions()


def thread_session() -> requests.Session:
    """The calling thread's pooled session (no cookies kept); pass it to FhirClient(session=)."""
    return _THREAD_SESSIONS.get()


class FhirClient:
    """Reads and searches one FHIR server, with a token, per-call time limits and a deadline."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None,
        *,
        timeout: float,
        max_pages: int,
        session: requests.Session | None = None,
        deadline: float | None = None,
        limits: ReplyLimits | None = None,
        guard: CallGuard | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in DEFAULT_PORTS or not urlsplit(base_url).hostname:
            raise ValueError("FHIR base URL must be an absolute http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # total time of one call: connection, headers and body
        self.max_pages = max_pages
        self.deadline = deadline  # a time.monotonic() value, or None
        self.limits = limits or ReplyLimits()
        self.pages_not_followed = 0  # next links left unread (max_pages, origin, size cap)
        self._guard = guard or CallGuard(deadline)
        self.calls = 0  # FHIR calls made
        self.call_seconds = 0.0  # their total duration
        self._auth = _BearerAuth(access_token) if access_token else None
        self._owns_session = session is None
        self._session = session or watched_session()

    def __repr__(self) -> str:
        return f"FhirClient({safe_path(self.base_url)!r}, token={'set' if self._auth else 'none'})"

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self._session.close()

    def read(self, path: str) -> dict[str, Any] | None:
        """One resource by `Type/id` relative to the base URL; None when the server says 404/410."""
        url = self._url(path)
        try:
            resource = self._timed_send(url)
        except FhirNotFound:
            return None
        expected_type = path.split("/", 1)[0]
        if resource.get("resourceType") != expected_type:
            raise FhirBadResponse(f"FHIR response is not a {expected_type}", path=safe_path(url))
        return resource

    def search(self, query: str) -> list[dict[str, Any]]:
        """Every entry resource of a search, following `next` links up to `max_pages`."""
        url = self._url(query)
        first = self._bundle(url)
        return [*entry_resources(first), *self._pages_after(first, url)]

    def follow(self, bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The entry resources of the pages after `bundle`, which counts as the first page."""
        return self._pages_after(bundle, self.base_url + "/")

    def _pages_after(self, page: Mapping[str, Any], page_url: str) -> list[dict[str, Any]]:
        resources: list[dict[str, Any]] = []
        pages_read, link = 1, next_link(page)
        while link is not None:
            page_url = urljoin(page_url, link)
            if not self._may_follow(page_url, pages_read):
                self.pages_not_followed += 1
                break
            try:
                page = self._bundle(page_url)
            except FhirReplyTooLarge:
                logger.warning("stopped paging: a next page is larger than the reply cap")
                self.pages_not_followed += 1
                break
            pages_read += 1
            resources.extend(entry_resources(page))
            link = next_link(page)
        return resources

    def _may_follow(self, next_url: str, pages_read: int) -> bool:
        if not same_origin(next_url, self.base_url):
            logger.warning("not following a next link outside the FHIR base URL")
            return False
        if pages_read >= self.max_pages:
            logger.warning("stopped paging after %d pages (max_pages)", pages_read)
            return False
        return True

    def _bundle(self, url: str) -> dict[str, Any]:
        body = self._timed_send(url)
        if body.get("resourceType") != "Bundle" or not isinstance(body.get("entry", []), list):
            raise FhirBadResponse("FHIR search did not answer a Bundle", path=safe_path(url))
        errors = error_issue_codes(body)
        if errors:
            logger.warning("FHIR search reported errors: %s", ", ".join(errors))
            raise FhirBadResponse("FHIR search reported an error", path=safe_path(url))
        return body

    def _url(self, relative: str) -> str:
        parts = urlsplit(relative)
        if parts.scheme or parts.netloc or relative.startswith(("/", "\\")):
            raise ValueError("FHIR request path must be relative to the base URL")
        if any(segment in ("", ".", "..") for segment in unquote(parts.path).split("/")):
            raise ValueError("FHIR request path has an empty, '.' or '..' segment")
        return f"{self.base_url}/{relative}"

    def _timed_send(self, url: str) -> dict[str, Any]:
        """`_send`, counted and timed for the audit trail and the call observers."""
        started = time.perf_counter()
        error: FhirError | None = None
        try:
            return self._send(url)
        except FhirError as raised:
            error = raised
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.calls += 1
            self.call_seconds += elapsed
            for observe in CALL_OBSERVERS:
                observe(elapsed, error)

    def _send(self, url: str) -> dict[str, Any]:
        """GET one URL within this call's time limit and return its JSON object."""
        call_deadline = time.monotonic() + self.timeout
        if self.deadline is not None:
            call_deadline = min(call_deadline, self.deadline)
        logger.debug("GET %s", url)
        body = fetch_json(
            self._session,
            url,
            path=safe_path(url),
            limits=self.limits,
            guard=self._guard,
            deadline=call_deadline,
            headers={"Accept": FHIR_JSON},
            auth=self._auth,
        )
        if not isinstance(body, dict):
            raise FhirBadResponse("FHIR response is not a JSON object", path=safe_path(url))
        return body


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The Bundle's `link[relation=next].url`, or None."""
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def entry_resources(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The resources of a Bundle's entries, skipping entries without one."""
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, Mapping):
            yield dict(resource)


def error_issue_codes(bundle: Mapping[str, Any]) -> list[str]:
    """The `code` of every error or fatal issue in the Bundle's OperationOutcome entries."""
    return [
        str(issue.get("code", "?"))
        for resource in entry_resources(bundle)
        if resource.get("resourceType") == "OperationOutcome"
        for issue in resource.get("issue") or []
        if isinstance(issue, Mapping) and issue.get("severity") in ("error", "fatal")
    ]
