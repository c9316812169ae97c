"""`GET /model-card`: the model card of the scorer this service runs, as HTML or JSON.

JSON when `?format=json` is given or the Accept header prefers `application/json`; HTML
otherwise. The card is built once, at start, from the scorer the hook engine uses.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from cds_service.settings import Settings
from cds_service.state import app_state
from model.assessment import Scorer
from model.model_card import model_card, render_html, rules_card
from model.rules_scorer import RulesV2Scorer
from model.rules_v2_card import rules_v2_card

bp = Blueprint("model_card", __name__)
RULES_SECTIONS = (
    "axes",
    "upper_limit_order",
    "markers",
    "site_limits",
    "sample_levels",
    "persistence",
    "decision",
    "findings",
    "timing",
)
# how the model is used; the note on the window (model.scorer) goes between the two parts
MODEL_USE_BEFORE_WINDOW_NOTE = (
    "Features: the latest value of each input in the early window (anchor to anchor + "
    "window_hours), as in training; results outside it are never model inputs.",
    "The model's class stands for the state at the latest early-window sample: high when the "
    "probability of the high-risk class reaches its threshold, else not-high with its class.",
)
MODEL_USE_AFTER_WINDOW_NOTE = (
    "Without IL-6, ferritin or CRP in the early window the model gives no output and the rules "
    "v2 states decide; the pathway always comes from the shared decision below.",
)


@bp.get("/model-card")
def model_card_view() -> ResponseReturnValue:
    """The configured scorer's model card, in the representation the client asked for."""
    card = app_state().model_card
    if wants_json():
        return jsonify(card)
    return Response(render_html(card), mimetype="text/html")


def init_app(app: Flask) -> None:
    """Register the model-card route; the card itself is part of the app state."""
    app.register_blueprint(bp)


def wants_json() -> bool:
    """True for `?format=json`, or an Accept header preferring JSON over HTML."""
    requested = request.args.get("format", "").lower()
    if requested in {"json", "html"}:
        return requested == "json"
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def card_for(scorer: Scorer, settings: Settings) -> dict[str, Any]:
    """The model's card with rules v2 beside it, the rules v2 card, or the v1 rule set's card."""
    timing = {
        "window": timedelta(hours=settings.window_hours),
        "look_back": settings.context.look_back,
        "current_max_age": timedelta(hours=settings.current_max_age_hours),
    }
    if scorer.info.kind == "model":
        # scikit-learn is imported only when a model is configured (start-up stays short)
        from model.scorer import MODEL_WINDOW_NOTE, ModelScorer

        if isinstance(scorer, ModelScorer):
            rules = rules_v2_card(scorer.rules, timing)
            shown = {key: rules[key] for key in RULES_SECTIONS}
            use = [*MODEL_USE_BEFORE_WINDOW_NOTE, MODEL_WINDOW_NOTE, *MODEL_USE_AFTER_WINDOW_NOTE]
            return {**model_card(scorer.model.metadata), **shown, "model_use": use}
    if isinstance(scorer, RulesV2Scorer):
        return rules_v2_card(scorer, timing)
    return rules_card(scorer)
