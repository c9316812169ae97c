"""`GET /model-card`: the model card of the scorer this service runs, as HTML or JSON.

JSON when `?format=json` is given or the Accept header prefers `application/json`; HTML
otherwise. The card is built once, at start, from the scorer the hook engine uses.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from cds_service.state import app_state
from model.assessment import Scorer
from model.model_card import model_card, render_html, rules_card

bp = Blueprint("model_card", __name__)


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


def card_for(scorer: Scorer) -> dict[str, Any]:
    """A model card from a model scorer's metadata, or the rule set's card."""
    model = getattr(scorer, "model", None)
    if scorer.info.kind == "model" and model is not None:
        return model_card(model.metadata)
    return rules_card(scorer)
