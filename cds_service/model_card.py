"""`GET /model-card`: the model card of the scorer this service runs, as HTML or JSON.

JSON when `?format=json` is given or the Accept header prefers `application/json`; HTML
otherwise. The card is built once per application from the scorer the hook engine uses.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from model.assessment import Scorer
from model.model_card import model_card, render_html, rules_card

bp = Blueprint("model_card", __name__)

SCORER_KEY = "picu_endotype.scorer"
ENGINE_KEY = "picu_endotype.hook_engine"
SETTINGS_KEY = "picu_endotype"
CARD_KEY = "picu_endotype.model_card"


@bp.get("/model-card")
def model_card_view() -> ResponseReturnValue:
    """The configured scorer's model card, in the representation the client asked for."""
    card = current_card()
    if wants_json():
        return jsonify(card)
    return Response(render_html(card), mimetype="text/html")


def wants_json() -> bool:
    """True for `?format=json`, or an Accept header preferring JSON over HTML."""
    requested = request.args.get("format", "").lower()
    if requested in {"json", "html"}:
        return requested == "json"
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def current_card() -> dict[str, Any]:
    """The card of the running scorer, built once and kept on the application."""
    card = current_app.extensions.get(CARD_KEY)
    if card is None:
        card = card_for(_running_scorer())
        current_app.extensions[CARD_KEY] = card
    return card


def card_for(scorer: Scorer) -> dict[str, Any]:
    """A model card from a model scorer's metadata, or the rule set's card."""
    model = getattr(scorer, "model", None)
    if scorer.info.kind == "model" and model is not None:
        return model_card(model.metadata)
    return rules_card(scorer)


def _running_scorer() -> Scorer:
    extensions = current_app.extensions
    scorer = extensions.get(SCORER_KEY) or getattr(extensions.get(ENGINE_KEY), "scorer", None)
    if scorer is not None:
        return scorer
    from cds_service.app import load_scorer

    return load_scorer(extensions[SETTINGS_KEY])
