"""The Flask application factory: `create_app(settings)` builds one configured service.

Nothing here reads configuration at import time; tests pass their own `Settings`. Everything the
service builds once (settings, panel, scorer, hook engine, stores, model card) goes into one
`AppState` (`cds_service.state`), and every error leaves as an OperationOutcome.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, Flask, Response, jsonify
from flask.typing import ResponseReturnValue

from cds_service import auth, discovery, errors, feedback, hooks, metrics, model_card
from cds_service.audit import AuditTrail, load_pseudonym_key
from cds_service.replay import ReplayStore
from cds_service.settings import Settings, load_settings
from cds_service.state import AppState, app_state, install_state
from cds_service.storage import Database, DatabaseError, open_database
from cds_service.turns import TakeTurns
from fhir_mappings.emit import check_proposals
from fhir_mappings.panel import Panel, load_panel
from fhir_mappings.units import UNIT_TEXT_ALIASES, warm_up
from model.assessment import Scorer

logger = logging.getLogger(__name__)

PACKAGE = "picu-endotype"

health_bp = Blueprint("health", __name__)


def package_version() -> str:
    """The installed package version, or "unknown" when running from an uninstalled tree."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


@health_bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Readiness for load balancers: up, and the database answers. No authentication, no data."""
    database = app_state().database
    try:
        database.ping()
    except DatabaseError:
        metrics.STORAGE_ERRORS.labels(store="health").inc()
        logger.warning("health check: the database does not answer")
        body = {"status": "unavailable", "database": "unavailable", "version": package_version()}
        return jsonify(body), 503
    return jsonify({"status": "ok", "database": "ok", "version": package_version()})


@health_bp.get("/livez")
def livez() -> ResponseReturnValue:
    """Liveness: the process answers (the database is not consulted)."""
    return jsonify({"status": "ok", "version": package_version()})


def open_audit_trail(settings: Settings, database: Database) -> AuditTrail | None:
    """The audit trail with the site's pseudonym key, or None when the trail is switched off."""
    if not settings.audit.enabled:
        return None
    configured = settings.audit.pseudonym_key
    key = load_pseudonym_key(
        configured.get_secret_value() if configured else None,
        settings.pseudonym_key_path,
        may_generate=database.is_sqlite and settings.audit.pseudonym_key_file is None,
    )
    retention = timedelta(days=settings.audit.retention_days)
    return AuditTrail(database, key, retention)


def load_scorer(settings: Settings) -> Scorer:
    """The scorer the settings choose: rules v2 (default), rules v1, or the scikit-learn model."""
    if settings.scorer == "model":
        from model.scorer import load_model_scorer

        return load_model_scorer(settings.model_path, settings.rules)
    if settings.rules.version == 1:
        from model.rules import load_rule_scorer

        return load_rule_scorer()
    from model.rules_scorer import load_rules_v2_scorer

    return load_rules_v2_scorer(settings.rules)


def warm_up_units(panel: Panel) -> None:
    """Build the UCUM registry and parse the panel's and the known unit-text units at start."""
    panel_units = {analyte.unit for analyte in panel.analytes.values()}
    coding_units = {
        coding.unit
        for analyte in panel.analytes.values()
        for coding in analyte.codes
        if coding.unit is not None
    }
    warm_up(sorted(panel_units | coding_units | set(UNIT_TEXT_ALIASES.values())))


def _forbid_caching(response: Response) -> Response:
    """Cards and errors concern one patient at one moment: no cache may keep them."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the CDS Hooks service for `settings` (default: the file and environment)."""
    settings = settings if settings is not None else load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.init_app(app)
    database = open_database(settings)
    authenticator = auth.init_app(app, settings, ReplayStore(database))
    discovery.init_app(app)
    hooks.init_app(app)
    feedback_store = feedback.init_app(app, database)
    model_card.init_app(app)
    bearer = settings.metrics.bearer_token
    metrics.init_app(app, bearer.get_secret_value() if bearer else None)
    app.register_blueprint(health_bp)
    app.after_request(_forbid_caching)
    panel = load_panel(settings.local_codes)
    warm_up_units(panel)
    check_proposals(panel.analytes.values())
    service = discovery.endotype_service(panel, settings)
    scorer = load_scorer(settings)
    state = AppState(
        settings=settings,
        panel=panel,
        scorer=scorer,
        services={service.id: service},
        engine=hooks.HookEngine(settings, panel, scorer, service.prefetch),
        authenticator=authenticator,
        feedback_store=feedback_store,
        database=database,
        audit_trail=open_audit_trail(settings, database),
        model_card=model_card.card_for(scorer, settings),
    )
    install_state(app, state)
    app.wsgi_app = TakeTurns(app.wsgi_app, settings.max_body_bytes)  # type: ignore[method-assign]
    return app
