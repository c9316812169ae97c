"""`POST /cds-services/{id}/feedback` and the idempotent store behind it (shared database).

The same card may receive feedback more than once (CDS Hooks §feedback), so each item is keyed by
a canonical hash of (service id, normalised item): a repeated body is acknowledged and stored
once, even when it names the same instant with another UTC offset or a code with another
display. We keep the caller's `iss`, `tenant` and `jti` for audit, never its JWT.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError as DatabaseError

from cds_service import auth, metrics
from cds_service.auth import CdsClient
from cds_service.discovery import find_service
from cds_service.errors import InvalidFeedback, validation_diagnostics
from cds_service.hooks import read_json_body
from cds_service.models import Feedback, FeedbackItem
from cds_service.state import app_state
from cds_service.storage.database import Database
from cds_service.storage.schema import feedback as feedback_table

logger = logging.getLogger(__name__)

bp = Blueprint("feedback", __name__)


@dataclass(frozen=True)
class StoreResult:
    """How many feedback items were new and how many had been stored before."""

    stored: int
    duplicates: int


def normalised_content(item: FeedbackItem) -> dict[str, object]:
    """What makes two feedback items the same: the instant in UTC, codes by system and code.

    Display texts, the order of accepted suggestions and unknown fields do not count.
    """
    override = item.overrideReason
    reason = override.reason if override else None
    return {
        "card": str(item.card),
        "outcome": item.outcome.value,
        "acceptedSuggestions": sorted({str(s.id) for s in item.acceptedSuggestions or ()}),
        "overrideReason": {"system": reason.system, "code": reason.code} if reason else None,
        "userComment": override.userComment if override else None,
        "outcomeTimestamp": item.outcomeTimestamp.astimezone(UTC).isoformat(),
    }


def item_hash(service_id: str, item: FeedbackItem) -> str:
    """A canonical sha256 over the service id and one feedback item's normalised content."""
    canonical = json.dumps(
        [service_id, normalised_content(item)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _row(
    service_id: str, item: FeedbackItem, client: CdsClient, received_at: datetime
) -> dict[str, Any]:
    """The table row for one feedback item."""
    accepted = [str(s.id) for s in item.acceptedSuggestions or ()]
    reason = item.overrideReason.reason if item.overrideReason else None
    comment = item.overrideReason.userComment if item.overrideReason else None
    return {
        "item_hash": item_hash(service_id, item),
        "service_id": service_id,
        "card": str(item.card),
        "outcome": item.outcome.value,
        "accepted_suggestions": accepted or None,
        "override_system": reason.system if reason else None,
        "override_code": reason.code if reason else None,
        "user_comment": comment,
        "outcome_timestamp": item.outcomeTimestamp.astimezone(UTC),
        "iss": client.iss,
        "tenant": client.tenant,
        "jti": client.jti,
        "received_at": received_at.astimezone(UTC),
    }


class FeedbackStore:
    """The feedback table: each item stored once (its hash is unique), in one transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database
        insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._insert = (
            insert(feedback_table)
            .on_conflict_do_nothing(index_elements=[feedback_table.c.item_hash])
            .execution_options(preserve_rowcount=True)
        )

    def store(
        self,
        service_id: str,
        items: Sequence[FeedbackItem],
        client: CdsClient,
        received_at: datetime,
    ) -> StoreResult:
        """Store each item unless an identical one is already there; committed on return."""
        rows = [_row(service_id, item, client, received_at) for item in items]
        stored = 0
        with self.database.begin() as connection:
            for row in rows:
                stored += connection.execute(self._insert, row).rowcount
        return StoreResult(stored=stored, duplicates=len(rows) - stored)

    def count(self) -> int:
        """How many feedback items are stored."""
        with self.database.begin() as connection:
            return int(
                connection.execute(select(func.count()).select_from(feedback_table)).scalar_one()
            )


def init_app(app: Flask, database: Database) -> FeedbackStore:
    """Open the feedback store on `database`, register the feedback route; return the store."""
    app.register_blueprint(bp)
    return FeedbackStore(database)


def parse_feedback() -> Feedback:
    """The validated feedback body of the current request."""
    try:
        return Feedback.model_validate(read_json_body())
    except ValidationError as error:
        raise InvalidFeedback(validation_diagnostics(error)) from None


@bp.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> ResponseReturnValue:
    """Store the user's feedback on our cards; the same body twice is stored once."""
    state = app_state()
    client = auth.authenticate(
        f"{state.settings.public_base_url}/cds-services/{service_id}/feedback"
    )
    service = find_service(service_id)
    feedback = parse_feedback()
    try:
        result = state.feedback_store.store(
            service.id, feedback.feedback, client, datetime.now(UTC)
        )
    except DatabaseError:
        metrics.STORAGE_ERRORS.labels(store="feedback").inc()
        raise
    for item in feedback.feedback:
        metrics.FEEDBACK_ITEMS.labels(outcome=item.outcome.value).inc()
    logger.info(
        "feedback service=%s iss=%s jti=%s stored=%d duplicates=%d",
        service.id,
        client.iss,
        client.jti,
        result.stored,
        result.duplicates,
    )
    return jsonify({"stored": result.stored, "duplicates": result.duplicates})
