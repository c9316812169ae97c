"""A small synchronous FHIR client: one `_send` seam, per-call timeouts, a deadline, safe paging.

Every failure leaves this module as one of these errors (all raised by `_send` or the Bundle
check), so callers catch at whatever level they need:

    FhirError                 any failure to obtain a FHIR resource
     ├── FhirUnauthorized     401 or 403: the access token was refused
     ├── FhirNotFound         404 or 410 on a search (a read answers None instead)
     ├── FhirUnavailable      5xx, 429, connection refused, DNS, TLS, proxy, broken transfer
     ├── FhirTimeout          a call timed out, or the overall deadline has passed
     └── FhirBadResponse      a redirect, another 4xx, a body that is not JSON or not the
                              expected resource (a Bundle for a search), or a searchset
                              carrying an error OperationOutcome (its results may be partial)

Messages carry the HTTP status and the URL path with resource ids replaced by `{id}`; they never
carry the access token, a query string or any other patient data. Full URLs are logged at DEBUG
only, and the token never.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3.exceptions

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
DEFAULT_PORTS = {"http": 80, "https": 443}


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


class FhirBadResponse(FhirError):
    """The FHIR server answered with something we cannot use."""


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


def translate_exception(exc: BaseException, path: str) -> FhirError:
    """The FhirError for one `requests` (or leaked urllib3) exception, without its message."""
    if isinstance(exc, requests.ConnectionError) and _is_read_timeout(exc):
        return FhirTimeout("FHIR server timed out", path=path)
    for exc_type, error_type, reason in _REQUESTS_ERRORS:
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

    def merge_environment_settings(
        self, url: str | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """The settings for `url`, from the per-origin cache when the call passes no overrides."""
        if proxies or stream is not None or verify is not None or cert is not None or not url:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        origin = (parts.scheme.lower(), parts.netloc.lower())
        settings = self._environment.get(origin)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, None, None, None)
            self._environment[origin] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


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
    """Reads and searches one FHIR server, with a token, per-call timeouts and a deadline."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None,
        *,
        timeout: float,
        max_pages: int,
        session: requests.Session | None = None,
        deadline: float | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in DEFAULT_PORTS or not urlsplit(base_url).hostname:
            raise ValueError("FHIR base URL must be an absolute http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_pages = max_pages
        self.deadline = deadline  # a time.monotonic() value, or None
        self.pages_not_followed = 0  # next links left unread (max_pages or another origin)
        self.calls = 0  # FHIR calls made
        self.call_seconds = 0.0  # their total duration
        self._auth = _BearerAuth(access_token) if access_token else None
        self._owns_session = session is None
        self._session = session or requests.Session()

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
            page = self._bundle(page_url)
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
        return f"{self.base_url}/{relative}"

    def _timeout_left(self, path: str) -> float:
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FhirTimeout("deadline passed before the FHIR call", path=path)
        return min(self.timeout, left)

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
        """GET one URL and return its JSON object; the one place errors are translated."""
        path = safe_path(url)
        timeout = self._timeout_left(path)
        logger.debug("GET %s (timeout %.2fs)", url, timeout)
        try:
            response = self._session.get(
                url,
                headers={"Accept": FHIR_JSON},
                auth=self._auth,
                timeout=timeout,
                allow_redirects=False,
            )
            error = error_for_status(response.status_code, path)
            if error is not None:
                raise error
            body = response.json()
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            logger.debug("GET %s failed: %s", url, type(exc).__name__)
            raise translate_exception(exc, path) from None
        except ValueError:
            raise FhirBadResponse("FHIR response is not JSON", path=path) from None
        if not isinstance(body, dict):
            raise FhirBadResponse("FHIR response is not a JSON object", path=path)
        logger.debug("GET %s -> %d", url, response.status_code)
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
