"""`POST /cds-services/{id}/feedback` and the idempotent SQLite store behind it.

The same card may receive feedback more than once (CDS Hooks §feedback), so each item is keyed by
a canonical hash of (service id, normalised item): a repeated body is acknowledged and stored
once, even when it names the same instant with another UTC offset or a code with another
display. We keep the caller's `iss`, `tenant` and `jti` for audit, never its JWT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from cds_service import auth
from cds_service.auth import CdsClient
from cds_service.discovery import find_service
from cds_service.errors import InvalidFeedback, validation_diagnostics
from cds_service.hooks import read_json_body
from cds_service.models import Feedback, FeedbackItem
from cds_service.settings import Settings
from cds_service.state import app_state

logger = logging.getLogger(__name__)

bp = Blueprint("feedback", __name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    item_hash TEXT NOT NULL UNIQUE,
    service_id TEXT NOT NULL,
    card TEXT NOT NULL,
    outcome TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_system TEXT,
    override_code TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT NOT NULL,
    iss TEXT,
    tenant TEXT,
    jti TEXT,
    received_at TEXT NOT NULL
)
"""

_INSERT = """
INSERT OR IGNORE INTO feedback (
    item_hash, service_id, card, outcome, accepted_suggestions, override_system, override_code,
    user_comment, outcome_timestamp, iss, tenant, jti, received_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


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
) -> tuple[str | None, ...]:
    """The table row for one feedback item."""
    accepted = [str(s.id) for s in item.acceptedSuggestions or ()]
    reason = item.overrideReason.reason if item.overrideReason else None
    comment = item.overrideReason.userComment if item.overrideReason else None
    return (
        item_hash(service_id, item),
        service_id,
        str(item.card),
        item.outcome.value,
        json.dumps(accepted) if accepted else None,
        reason.system if reason else None,
        reason.code if reason else None,
        comment,
        item.outcomeTimestamp.astimezone(UTC).isoformat(),
        client.iss,
        client.tenant,
        client.jti,
        received_at.astimezone(UTC).isoformat(),
    )


class FeedbackStore:
    """SQLite feedback store (WAL): one short connection per write, safe across workers."""

    def __init__(self, path: Path) -> None:
        """Create the database at `path` if needed."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success and is always closed."""
        with closing(sqlite3.connect(self.path, timeout=5.0)) as connection, connection:
            yield connection

    def store(
        self,
        service_id: str,
        items: Sequence[FeedbackItem],
        client: CdsClient,
        received_at: datetime,
    ) -> StoreResult:
        """Store each item unless an identical one is already there."""
        rows = [_row(service_id, item, client, received_at) for item in items]
        stored = 0
        with self._connection() as connection:
            for row in rows:
                stored += connection.execute(_INSERT, row).rowcount
        return StoreResult(stored=stored, duplicates=len(rows) - stored)

    def count(self) -> int:
        """How many feedback items are stored."""
        with self._connection() as connection:
            return connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


def init_app(app: Flask, settings: Settings) -> FeedbackStore:
    """Open the feedback store the settings name, register the feedback route; return the store."""
    app.register_blueprint(bp)
    return FeedbackStore(settings.feedback_db_path)


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
    result = state.feedback_store.store(service.id, feedback.feedback, client, datetime.now(UTC))
    logger.info(
        "feedback service=%s iss=%s jti=%s stored=%d duplicates=%d",
        service.id,
        client.iss,
        client.jti,
        result.stored,
        result.duplicates,
    )
    return jsonify({"stored": result.stored, "duplicates": result.duplicates})
