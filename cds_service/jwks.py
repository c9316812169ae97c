"""Public keys of one trusted CDS client: inline, from its JWKS URL, or from an allow-listed `jku`.

Remote key sets are cached for five minutes. An unknown `kid` forces at most one refresh per
`jwks_refresh_min_interval_seconds`, so a flood of made-up key ids cannot turn into a flood of
fetches. Keys are never cached individually: a key the EHR withdraws stops working when the set
is next fetched.
"""

from __future__ import annotations

import json

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWTError

from cds_service.settings import ClientSettings

JWKS_CACHE_SECONDS = 300.0
JWKS_FETCH_TIMEOUT_SECONDS = 2.0


class KeyNotFound(Exception):
    """No usable public key for the token's `kid` (and `jku`) could be found."""


class JkuNotAllowed(KeyNotFound):
    """The token names a `jku` that is not on its client's allow-list; nothing was fetched."""


def parse_inline_jwks(text: str, iss: str) -> PyJWKSet:
    """Parse a configured inline JWK Set, failing at start-up if it holds no usable key."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return PyJWKSet.from_dict(document)
    except (ValueError, PyJWTError) as error:
        raise ValueError(f"client {iss!r}: inline jwks is not a usable JWK Set ({error})") from None


def _signing_keys(key_set: PyJWKSet) -> list[PyJWK]:
    """Keys of a set meant for signatures that carry a key id."""
    return [key for key in key_set.keys if key.public_key_use in ("sig", None) and key.key_id]


def _remote_key_set(url: str, refresh_min_interval: float) -> PyJWKClient:
    """A cached, rate-limited fetcher for one JWKS URL."""
    return PyJWKClient(
        url,
        cache_keys=False,
        cache_jwk_set=True,
        lifespan=JWKS_CACHE_SECONDS,
        timeout=JWKS_FETCH_TIMEOUT_SECONDS,
        cooldown_duration=refresh_min_interval,
    )


class ClientKeys:
    """Every public key source configured for one client, with per-URL caches."""

    def __init__(self, client: ClientSettings, refresh_min_interval: float) -> None:
        self.iss = client.iss
        self._inline = parse_inline_jwks(client.jwks, client.iss) if client.jwks else None
        urls = [*client.allowed_jku, *([client.jwks_url] if client.jwks_url else [])]
        self._remote = {url: _remote_key_set(url, refresh_min_interval) for url in urls}
        self._default_url = client.jwks_url

    def signing_key(self, kid: str, jku: str | None) -> PyJWK:
        """The key for `kid`, from the `jku` set if one is named, else from the configured keys."""
        if jku is not None:
            if jku not in self._remote:
                raise JkuNotAllowed("jku is not allow-listed for this issuer")
            return self._fetch(jku, kid)
        if self._inline is not None:
            for key in _signing_keys(self._inline):
                if key.key_id == kid:
                    return key
        if self._default_url is not None:
            return self._fetch(self._default_url, kid)
        raise KeyNotFound("no configured key matches the kid")

    def _fetch(self, url: str, kid: str) -> PyJWK:
        """Look `kid` up in one remote set, refreshing it at most once per interval."""
        try:
            return self._remote[url].get_signing_key(kid)
        except (PyJWTError, ValueError, OSError) as error:  # unreachable, not JSON, no usable key
            reason = type(error).__name__
            raise KeyNotFound(f"no key for the kid in the remote key set ({reason})") from None
