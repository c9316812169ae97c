"""Public keys of one trusted CDS client: inline, from its JWKS URL, or from an allow-listed `jku`.

A token's key is looked up, in order, among the inline keys, the remote sets already cached, the
set its `jku` names (when that URL is allowed for the client), and the client's `jwks_url`. A
`jku` off the allow-list is never fetched: it is ignored, and the token is refused only if no
configured key matches its `kid`. So an EHR (or the CDS Hooks sandbox) that always sends a `jku`
can be registered with its key inline.

Remote sets are fetched through the FHIR client's capped transport: a total time limit per fetch
(`limits.jwks_timeout_seconds`, not a per-read timeout a dripping server can stretch), a size cap
and a nesting limit. Sets are cached for five minutes. An unknown `kid` forces at most one
refresh per `jwks_refresh_min_interval_seconds`, and a failed fetch is not retried for a few
seconds, so neither made-up key ids nor a broken endpoint turn into a flood of fetches. Keys are
never cached individually: a key the EHR withdraws stops working when the set is next fetched.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWTError

from cds_service.settings import ClientSettings
from cds_service.turns import released
from fhir_mappings.client import (
    CallGuard,
    FhirBadResponse,
    FhirError,
    FhirReplyTooLarge,
    FhirTimeout,
    ReplyLimits,
    fetch_json,
    safe_path,
    watched_session,
)
from fhir_mappings.limits import LimitSettings

logger = logging.getLogger(__name__)

JWKS_CACHE_SECONDS = 300.0
FAILED_FETCH_BACKOFF_SECONDS = 5.0  # a failed fetch is retried no sooner (or the interval)


class KeyNotFound(Exception):
    """No usable public key for the token's `kid` (and `jku`) could be found."""


class JkuNotAllowed(KeyNotFound):
    """The token names a `jku` that is not on its client's allow-list, and no other key fits."""


def parse_inline_jwks(text: str, iss: str) -> PyJWKSet:
    """Parse a configured inline JWK Set, failing at start-up if it holds no usable key."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return PyJWKSet.from_dict(document)
    except (ValueError, PyJWTError) as error:
        raise ValueError(f"client {iss!r}: inline jwks is not a usable JWK Set ({error})") from None


def _signing_keys(key_set: PyJWKSet) -> dict[str, PyJWK]:
    """Keys of a set meant for signatures, by key id (keys without one are skipped)."""
    return {
        key.key_id: key
        for key in key_set.keys
        if key.public_key_use in ("sig", None) and key.key_id
    }


def _fetch_failure(error: FhirError, limits: ReplyLimits) -> str:
    """Why a key-set fetch failed, in words for the refusal log."""
    if isinstance(error, FhirTimeout):
        return "the key set was not fetched within the time limit"
    if isinstance(error, FhirReplyTooLarge):
        return f"the key set reply is larger than {limits.max_bytes} bytes"
    if isinstance(error, FhirBadResponse):
        return f"the key set reply is unusable ({error.reason})"
    return f"the key set could not be fetched ({error.reason})"


class RemoteKeySet:
    """One JWKS URL: fetched within a total time limit, cached, refreshed at a bounded rate."""

    def __init__(self, url: str, refresh_min_interval: float, limits: LimitSettings) -> None:
        self.url = url
        self.refresh_min_interval = refresh_min_interval
        self.timeout = limits.jwks_timeout_seconds
        self.reply_limits = ReplyLimits(limits.jwks_max_bytes, limits.max_json_depth)
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._failed_at: float | None = None  # monotonic time of the last failed fetch

    def cached(self, kid: str) -> PyJWK | None:
        """The key for `kid` from a set fetched less than five minutes ago, without fetching."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at >= JWKS_CACHE_SECONDS:
            return None
        return self._keys.get(kid)

    def signing_key(self, kid: str) -> PyJWK:
        """The key for `kid`, fetching the set if it is stale or (at a bounded rate) lacks it.

        A cached key needs no lock; waiting for another request's fetch, and fetching, happen
        outside this process's turn (`cds_service.turns`).
        """
        key = self.cached(kid)
        if key is not None:
            return key
        with released():
            if not self._lock.acquire(timeout=self.timeout):
                raise KeyNotFound("the key set is being fetched by another request")
            try:
                key = self.cached(kid)
                if key is None:
                    self._refresh_if_allowed()
                    key = self.cached(kid)
            finally:
                self._lock.release()
        if key is None:
            raise KeyNotFound("no key for the kid in the remote key set")
        return key

    def _refresh_if_allowed(self) -> None:
        """Fetch the set unless a fetch was made (or failed) too recently."""
        now = time.monotonic()
        backoff = min(FAILED_FETCH_BACKOFF_SECONDS, self.refresh_min_interval)
        if self._failed_at is not None and now - self._failed_at < backoff:
            raise KeyNotFound("the key set could not be fetched recently; not retried yet")
        fresh = self._fetched_at is not None and now - self._fetched_at < JWKS_CACHE_SECONDS
        if fresh and now - self._fetched_at < self.refresh_min_interval:  # type: ignore[operator]
            return  # the kid is unknown, but the set was fetched a moment ago
        try:
            self._keys = _signing_keys(PyJWKSet.from_dict(self._download()))
        except FhirError as error:
            self._failed_at = time.monotonic()
            raise KeyNotFound(_fetch_failure(error, self.reply_limits)) from None
        except (PyJWTError, ValueError, TypeError) as error:
            self._failed_at = time.monotonic()
            raise KeyNotFound(f"the key set holds no usable key ({type(error).__name__})") from None
        self._fetched_at, self._failed_at = time.monotonic(), None

    def _download(self) -> Any:
        """The key set document, read through the capped transport within the time limit."""
        with watched_session() as session:
            document = fetch_json(
                session,
                self.url,
                path=safe_path(self.url),
                limits=self.reply_limits,
                guard=CallGuard(),
                deadline=time.monotonic() + self.timeout,
                headers={"Accept": "application/json"},
            )
        if not isinstance(document, dict):
            raise ValueError("the key set is not a JSON object")
        return document


class ClientKeys:
    """Every public key source configured for one client, with per-URL caches."""

    def __init__(
        self,
        client: ClientSettings,
        refresh_min_interval: float,
        limits: LimitSettings | None = None,
    ) -> None:
        self.iss = client.iss
        inline = parse_inline_jwks(client.jwks, client.iss) if client.jwks else None
        self._inline = _signing_keys(inline) if inline is not None else {}
        urls = [*client.allowed_jku, *([client.jwks_url] if client.jwks_url else [])]
        chosen_limits = limits or LimitSettings()
        self._remote = {url: RemoteKeySet(url, refresh_min_interval, chosen_limits) for url in urls}
        self._default_url = client.jwks_url

    def signing_key(self, kid: str, jku: str | None) -> PyJWK:
        """The key for `kid`: inline, cached, from an allowed `jku`, then from `jwks_url`."""
        key = self._inline.get(kid) or self._cached(kid)
        if key is not None:
            return key
        jku_allowed = jku is not None and jku in self._remote
        if jku is not None and not jku_allowed:
            logger.info("ignored a jku that is not allow-listed for this issuer (not fetched)")
        failures: list[str] = []
        for url in dict.fromkeys([jku if jku_allowed else None, self._default_url]):
            if url is None:
                continue
            try:
                return self._remote[url].signing_key(kid)
            except KeyNotFound as error:
                failures.append(str(error))
        if jku is not None and not jku_allowed:
            raise JkuNotAllowed(
                "jku is not allow-listed for this issuer, and no configured key matches the kid"
            )
        raise KeyNotFound("; ".join(failures) or "no configured key matches the kid")

    def _cached(self, kid: str) -> PyJWK | None:
        """The key for `kid` from any remote set already in the cache."""
        for remote in self._remote.values():
            key = remote.cached(kid)
            if key is not None:
                return key
        return None
