"""Prometheus metrics for operations, safe under gunicorn's worker processes.

Counters and histograms live here; every one has labels, so no value exists before a worker first
observes it. `picu-endotype serve` sets `PROMETHEUS_MULTIPROC_DIR` before this module is
imported, each worker then writes its samples to files there, and `exposition()` aggregates all
workers' files. Without that variable (tests, a single process) the process's own registry is
served. Metrics carry no patient data and no identifiers: only outcomes, kinds and timings.
"""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Flask, Response, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from fhir_mappings import client as fhir_client
from fhir_mappings.client import FhirError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

HOOKS = Counter(
    "picu_endotype_hooks",
    "Hook calls answered, by outcome (card, silent, age-gated, error:<status>), pathway and "
    "data source (prefetch, query, prefetch+query, none).",
    ["outcome", "pathway", "source"],
)
HOOK_SECONDS = Histogram(
    "picu_endotype_hook_duration_seconds",
    "Time to answer a hook, from authentication to the audit record.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
FHIR_CALL_SECONDS = Histogram(
    "picu_endotype_fhir_call_duration_seconds",
    "Duration of one call to an EHR's FHIR server, by result (ok or error).",
    ["result"],
    buckets=_LATENCY_BUCKETS,
)
FHIR_ERRORS = Counter(
    "picu_endotype_fhir_errors",
    "Failed FHIR calls by kind (unauthorized, not-found, unavailable, timeout, bad-response).",
    ["kind"],
)
JWT_REFUSALS = Counter(
    "picu_endotype_jwt_refusals",
    "Client JWTs refused, by reason.",
    ["reason"],
)
STORAGE_ERRORS = Counter(
    "picu_endotype_storage_errors",
    "Database errors, by store (replay, feedback, audit, health).",
    ["store"],
)
FEEDBACK_ITEMS = Counter(
    "picu_endotype_feedback_items",
    "Feedback items received (repeats included), by outcome (accepted, overridden).",
    ["outcome"],
)

_FHIR_ERROR_KINDS = {
    "FhirUnauthorized": "unauthorized",
    "FhirNotFound": "not-found",
    "FhirUnavailable": "unavailable",
    "FhirTimeout": "timeout",
    "FhirBadResponse": "bad-response",
}


def fhir_error_kind(error: FhirError) -> str:
    """The metric label of a FHIR error: its nearest known class."""
    for cls in type(error).__mro__:
        if cls.__name__ in _FHIR_ERROR_KINDS:
            return _FHIR_ERROR_KINDS[cls.__name__]
    return "other"


def observe_fhir_call(seconds: float, error: FhirError | None) -> None:
    """Count one FHIR call (registered with the FHIR client)."""
    FHIR_CALL_SECONDS.labels(result="ok" if error is None else "error").observe(seconds)
    if error is not None:
        FHIR_ERRORS.labels(kind=fhir_error_kind(error)).inc()


def observe_hook(outcome: str, pathway: str, source: str, seconds: float) -> None:
    """Count one answered hook and its duration."""
    HOOKS.labels(outcome=outcome, pathway=pathway, source=source).inc()
    HOOK_SECONDS.labels(outcome=outcome).observe(seconds)


def registry() -> CollectorRegistry:
    """Every worker's samples aggregated (multiprocess mode), else this process's registry."""
    if os.environ.get(MULTIPROC_ENV):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return REGISTRY


def exposition() -> bytes:
    """The current metrics in the Prometheus text format."""
    return generate_latest(registry())


bp = Blueprint("metrics", __name__)
TOKEN_KEY = "picu_endotype.metrics_token"


@bp.get("/metrics")
def serve_metrics() -> ResponseReturnValue:
    """The metrics, for a scraper that sends the configured bearer token; 404 for anyone else."""
    from flask import current_app

    expected: str = current_app.extensions[TOKEN_KEY]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
        return Response("", status=404)
    return Response(exposition(), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask, bearer_token: str | None) -> None:
    """Observe FHIR calls; serve /metrics on the main port when a bearer token is configured."""
    if observe_fhir_call not in fhir_client.CALL_OBSERVERS:
        fhir_client.CALL_OBSERVERS.append(observe_fhir_call)
    if bearer_token:
        app.extensions[TOKEN_KEY] = bearer_token
        app.register_blueprint(bp)
