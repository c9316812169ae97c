"""The Flask application factory: `create_app(settings)` builds one configured service.

Nothing here reads configuration at import time; tests pass their own `Settings`. The settings
live in `app.extensions["picu_endotype"]`, the panel and scorer are loaded once at start, and
every error leaves as an OperationOutcome.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, jsonify
from flask.typing import ResponseReturnValue

from cds_service.settings import Settings, load_settings
from model.assessment import Scorer

if TYPE_CHECKING:
    from fhir_mappings.panel import Panel

PACKAGE = "picu-endotype"
SCORER_KEY = "picu_endotype.scorer"

health_bp = Blueprint("health", __name__)


def package_version() -> str:
    """The installed package version, or "unknown" when running from an uninstalled tree."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


@health_bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness for load balancers: no authentication, no patient data."""
    return jsonify({"status": "ok", "version": package_version()})


def load_scorer(settings: Settings) -> Scorer:
    """The scorer the settings choose: the v1 rules, or the scikit-learn model."""
    if settings.scorer == "model":
        from model.scorer import load_model_scorer

        return load_model_scorer(settings.model_path)
    from model.rules import load_rule_scorer

    return load_rule_scorer()


def warm_up_units(panel: Panel) -> None:
    """Build the UCUM registry and parse the panel's and the known unit-text units at start."""
    from fhir_mappings.units import UNIT_TEXT_ALIASES, warm_up

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


def _register_model_card(app: Flask) -> None:
    """Serve GET /model-card when that module is part of this build."""
    if importlib.util.find_spec("cds_service.model_card") is not None:
        from cds_service.model_card import bp as model_card_bp

        app.register_blueprint(model_card_bp)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the CDS Hooks service for `settings` (default: the file and environment)."""
    from cds_service import auth, discovery, errors, feedback, hooks
    from fhir_mappings.panel import load_panel

    settings = settings if settings is not None else load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[discovery.SETTINGS_KEY] = settings
    errors.init_app(app)
    auth.init_app(app, settings)
    panel = load_panel(settings.local_codes)
    warm_up_units(panel)
    service = discovery.endotype_service(panel, settings)
    discovery.init_app(app, (service,))
    scorer = load_scorer(settings)
    app.extensions[SCORER_KEY] = scorer
    engine = hooks.HookEngine(settings, panel, scorer, service.prefetch)
    hooks.init_app(app, engine)
    feedback.init_app(app, settings)
    app.register_blueprint(health_bp)
    app.after_request(_forbid_caching)
    _register_model_card(app)
    return app
