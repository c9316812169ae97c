"""Who may call us and where their tokens may go: client JWTs, CORS, and the fhirServer allow-list.

Verification order (CDS Hooks best practices): `iss` is a configured client → header (`alg` on the
allow-list before any key lookup, `kid`, `typ`) → the key (inline, `jwks_url` or an allow-listed
`jku`) → signature, `exp`/`iat`/`nbf`/`aud` with leeway → lifetime → `tenant` → `jti` not replayed.
A refusal is answered 401 with an empty body; its reason goes to the log, never the token.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from flask import Flask, Response, request
from jwt import PyJWK
from sqlalchemy.exc import SQLAlchemyError as DatabaseError

from cds_service import metrics
from cds_service.jwks import ClientKeys, KeyNotFound
from cds_service.replay import ReplayStore
from cds_service.settings import ClientSettings, Settings
from cds_service.state import app_state
from cds_service.storage import open_database

logger = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
_TENANT_IN_URL = re.compile(r"^[A-Za-z0-9._-]+$")
_LOG_FIELD_MAX = 200


@dataclass(frozen=True)
class CdsClient:
    """The caller of one request, as established by its verified JWT (or dev mode)."""

    iss: str | None
    tenant: str | None
    jti: str | None
    fhir_servers: tuple[str, ...]
    authenticated: bool


UNAUTHENTICATED = CdsClient(iss=None, tenant=None, jti=None, fhir_servers=(), authenticated=False)


class Unauthorized(Exception):
    """The CDS client could not be authenticated; rendered as an empty 401."""

    def __init__(self, reason: str, *, kind: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short, fixed label for metrics: expired, replayed, signature, ...


class FhirServerNotAllowed(Exception):
    """The request's fhirServer is not one this client's token may be sent to."""


class DevModeNotAllowed(RuntimeError):
    """Unauthenticated development mode was asked for on a non-loopback address."""


def _is_asymmetric(algorithm: str) -> bool:
    """True for signature algorithms we may ever accept (never `none`, never HMAC)."""
    return algorithm.lower() != "none" and not algorithm.upper().startswith("HS")


def _for_log(value: Any) -> str:
    """A short, quoted rendering of an unverified value for the audit log."""
    return repr(value)[:_LOG_FIELD_MAX]


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Verifies CDS client JWTs against the configured clients; built once per app."""

    def __init__(self, settings: Settings, replay: ReplayStore | None = None) -> None:
        """Index the clients; `replay` defaults to a store on the settings' database."""
        self.settings = settings
        self.algorithms = [a for a in settings.allowed_algorithms if _is_asymmetric(a)]
        self.clients = self._trusted_clients(settings)
        self.replay = replay if replay is not None else ReplayStore(open_database(settings))

    @staticmethod
    def _trusted_clients(settings: Settings) -> dict[str, tuple[ClientSettings, ClientKeys]]:
        """Index the configured clients by `iss`, parsing inline keys now so bad ones fail early."""
        clients: dict[str, tuple[ClientSettings, ClientKeys]] = {}
        interval = settings.jwks_refresh_min_interval_seconds
        for client in settings.clients:
            if client.iss in clients:
                raise ValueError(f"client {client.iss!r} is configured twice")
            clients[client.iss] = (client, ClientKeys(client, interval, settings.limits))
        return clients

    def authenticate_header(self, authorization: str | None, audience: str) -> CdsClient:
        """Authenticate a request from its Authorization header value."""
        if self.settings.dev_allow_unauthenticated:
            return UNAUTHENTICATED
        token = bearer_token(authorization)
        return self.verify(token, audience)

    def verify(self, token: str, audience: str) -> CdsClient:
        """Verify one client JWT for the endpoint `audience`, recording its `jti`."""
        unverified_header, iss = self._unverified_parts(token)
        client, keys = self._client_for(iss)
        header = self._checked_header(unverified_header)
        key = self._key_for(keys, header)
        claims = self._decode(token, key, header["alg"], audience, iss)
        self._check_lifetime(claims)
        tenant = self._check_tenant(claims, client)
        jti = self._check_jti(claims, iss)
        logger.info("CDS client authenticated: iss=%s tenant=%s jti=%s", iss, tenant, jti)
        return CdsClient(
            iss=iss,
            tenant=tenant,
            jti=jti,
            fhir_servers=tuple(client.fhir_servers),
            authenticated=True,
        )

    @staticmethod
    def _unverified_parts(token: str) -> tuple[dict[str, Any], str]:
        """The JOSE header and `iss`, read unverified in one pass, to choose the client's keys."""
        try:
            parts = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthorized("not a JWT", kind="malformed") from None
        payload, header = parts["payload"], parts["header"]
        iss = payload.get("iss") if isinstance(payload, dict) else None
        if not isinstance(iss, str) or not iss:
            raise Unauthorized("no iss claim", kind="malformed")
        if not isinstance(header, dict):
            raise Unauthorized("unreadable JWT header", kind="malformed")
        return header, iss

    def _client_for(self, iss: str) -> tuple[ClientSettings, ClientKeys]:
        """The configured client for `iss`."""
        trusted = self.clients.get(iss)
        if trusted is None:
            raise Unauthorized(
                f"iss {_for_log(iss)} is not a configured client", kind="unknown-issuer"
            )
        return trusted

    def _checked_header(self, header: dict[str, Any]) -> dict[str, Any]:
        """The JOSE header, once `alg`, `kid`, `typ` and `jku` have the expected shape."""
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthorized(f"alg {_for_log(alg)} is not allowed", kind="algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("kid missing", kind="malformed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise Unauthorized(f"typ {_for_log(typ)} is not JWT", kind="malformed")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise Unauthorized("jku is not a string", kind="malformed")
        return header

    @staticmethod
    def _key_for(keys: ClientKeys, header: dict[str, Any]) -> PyJWK:
        """The client's public key named by the header, or a refusal."""
        try:
            return keys.signing_key(header["kid"], header.get("jku"))
        except KeyNotFound as error:
            kid = _for_log(header["kid"])
            raise Unauthorized(
                f"{error} (iss={_for_log(keys.iss)}, kid={kid})", kind="unknown-key"
            ) from None

    def _decode(self, token: str, key: PyJWK, alg: str, audience: str, iss: str) -> dict[str, Any]:
        """Check the signature and the time and audience claims, with the configured leeway."""
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.settings.jwt_leeway_seconds,
                options={"require": REQUIRED_CLAIMS, "verify_nbf": True, "verify_iat": True},
            )
        except jwt.InvalidAudienceError:
            received = jwt.decode(token, options={"verify_signature": False}).get("aud")
            raise Unauthorized(
                f"aud {_for_log(received)} does not match {audience!r}; check the EHR's "
                "configured service URL",
                kind="audience",
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            kind = "expired" if isinstance(error, jwt.ExpiredSignatureError) else "claims"
            if isinstance(error, jwt.InvalidSignatureError):
                kind = "signature"
            raise Unauthorized(f"token rejected: {type(error).__name__}", kind=kind) from None

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """Refuse tokens whose `exp − iat` exceeds the configured maximum lifetime."""
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self.settings.jwt_max_lifetime_seconds:
            raise Unauthorized(f"lifetime {lifetime:.0f} s exceeds the maximum", kind="lifetime")

    @staticmethod
    def _check_tenant(claims: dict[str, Any], client: ClientSettings) -> str | None:
        """The `tenant` claim, checked against the client's tenant allow-list."""
        tenant = claims.get("tenant")
        if tenant is None:
            if client.tenant_required:
                raise Unauthorized("tenant claim required", kind="tenant")
            return None
        if not isinstance(tenant, str):
            raise Unauthorized("tenant claim is not a string", kind="tenant")
        if client.tenants and tenant not in client.tenants:
            raise Unauthorized(f"tenant {_for_log(tenant)} is not allowed", kind="tenant")
        return tenant

    def _check_jti(self, claims: dict[str, Any], iss: str) -> str:
        """Record the `jti`, refusing one already seen from this issuer within its lifetime."""
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise Unauthorized("jti is not a non-empty string", kind="malformed")
        expires_at = float(claims["exp"]) + self.settings.jwt_leeway_seconds
        try:
            first_use = self.replay.first_use(iss, jti, expires_at)
        except DatabaseError:
            metrics.STORAGE_ERRORS.labels(store="replay").inc()
            raise
        if not first_use:
            raise Unauthorized(
                f"jti {_for_log(jti)} replayed (iss={_for_log(iss)})", kind="replayed"
            )
        return jti


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not authorization:
        raise Unauthorized("no Authorization header", kind="missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("Authorization is not a Bearer token", kind="not-bearer")
    return token


def authenticate(audience: str) -> CdsClient:
    """Authenticate the current request for the endpoint URL `audience`, or raise Unauthorized."""
    authenticator = app_state().authenticator
    try:
        return authenticator.authenticate_header(request.headers.get("Authorization"), audience)
    except Unauthorized as refusal:
        metrics.JWT_REFUSALS.labels(reason=refusal.kind).inc()
        logger.warning("CDS client refused at %s: %s", _for_log(audience), refusal.reason)
        raise


def _render_unauthorized(_: Unauthorized) -> Response:
    """401 with no body and no reason, as the CDS Hooks best practices ask."""
    return Response(
        "", status=401, headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
    )


def _normalised_base(url: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path) of an absolute http(s) base URL, or None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    scheme = parts.scheme.lower()
    default_port = 443 if scheme == "https" else 80
    explicit_port = None if port == default_port else port
    return scheme, parts.hostname.lower(), explicit_port, parts.path.rstrip("/")


def _allowed_bases(client: CdsClient) -> set[tuple[str, str, int | None, str]]:
    """The client's configured FHIR bases, with `{tenant}` filled from its verified claim."""
    bases = set()
    for configured in client.fhir_servers:
        if "{tenant}" in configured:
            if client.tenant is None or not _TENANT_IN_URL.match(client.tenant):
                continue
            configured = configured.replace("{tenant}", client.tenant)
        base = _normalised_base(configured)
        if base is not None:
            bases.add(base)
    return bases


def check_fhir_server(client: CdsClient, fhir_server: str, settings: Settings) -> None:
    """Allow sending this client's access token to `fhir_server`, or raise FhirServerNotAllowed."""
    base = _normalised_base(fhir_server)
    if base is None:
        raise FhirServerNotAllowed("fhirServer is not an absolute http(s) URL")
    scheme, host, _, _ = base
    insecure_hosts = {h.lower().strip("[]") for h in settings.insecure_http_fhir_hosts}
    development_host = host.strip("[]") in insecure_hosts or is_loopback(host)
    if not client.authenticated:
        if settings.dev_allow_unauthenticated and development_host:
            return
        raise FhirServerNotAllowed("fhirServer is not allowed without client authentication")
    if scheme == "http" and host.strip("[]") not in insecure_hosts:
        raise FhirServerNotAllowed("fhirServer must use https")
    if base not in _allowed_bases(client):
        raise FhirServerNotAllowed("fhirServer is not on this client's list of FHIR servers")


def assert_dev_mode_safe(settings: Settings, host: str) -> None:
    """Refuse unauthenticated development mode off loopback, and warn whenever it is on."""
    if not settings.dev_allow_unauthenticated:
        return
    if not is_loopback(host):
        logger.error("dev_allow_unauthenticated refused: %s is not a loopback address", host)
        raise DevModeNotAllowed(
            f"dev_allow_unauthenticated may only bind to loopback, not {host!r}"
        )
    logger.warning(
        "DEVELOPMENT MODE: CDS client authentication is OFF (dev_allow_unauthenticated); "
        "FHIR is fetched only from loopback or insecure_http_fhir_hosts. Never use in production."
    )


def install_cors(app: Flask, allowed_origins: list[str]) -> None:
    """Answer preflights without authentication and echo allow-listed origins only."""
    origins = frozenset(origin.rstrip("/") for origin in allowed_origins)

    @app.before_request
    def _answer_preflight() -> Response | None:
        is_preflight = request.method == "OPTIONS" and request.headers.get(
            "Access-Control-Request-Method"
        )
        if is_preflight and request.url_rule is not None:
            return app.response_class(status=204)
        return None

    @app.after_request
    def _add_cors_headers(response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or origin not in origins:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        return response


def init_app(app: Flask, settings: Settings, replay: ReplayStore | None = None) -> Authenticator:
    """Build the authenticator once, register its CORS handling and 401 rendering; return it."""
    assert_dev_mode_safe(settings, settings.host)
    authenticator = Authenticator(settings, replay)
    if authenticator.clients:
        logger.info("trusted CDS clients: %s", ", ".join(sorted(authenticator.clients)))
    elif not settings.dev_allow_unauthenticated:
        logger.warning("no CDS clients are configured: every call will be answered 401")
    app.register_error_handler(Unauthorized, _render_unauthorized)
    install_cors(app, settings.cors_allowed_origins)
    return authenticator
