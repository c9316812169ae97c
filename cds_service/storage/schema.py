"""The tables, defined once: the migrations create them, the stores read and write them.

Times are stored as UTC instants (`UtcDateTime`), JSON columns hold lists and objects of plain
values (JSONB on PostgreSQL). Nothing here holds a token: the audit keeps a patient pseudonym.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only
JSON_VALUE = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC; SQLite keeps it as naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


seen_jti = Table(
    "seen_jti",
    metadata,
    Column("iss", Text, nullable=False),
    Column("jti", Text, nullable=False),
    Column("expires_at", Float, nullable=False),  # POSIX seconds
    PrimaryKeyConstraint("iss", "jti", name="seen_jti_pkey"),
    Index("seen_jti_expires_at", "expires_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("item_hash", Text, nullable=False, unique=True),  # idempotence key
    Column("service_id", Text, nullable=False),
    Column("card", Text, nullable=False),  # the card's uuid
    Column("outcome", Text, nullable=False),  # accepted | overridden
    Column("accepted_suggestions", JSON_VALUE),  # suggestion uuids
    Column("override_system", Text),
    Column("override_code", Text),
    Column("user_comment", Text),
    Column("outcome_timestamp", UtcDateTime, nullable=False),
    Column("iss", Text),
    Column("tenant", Text),
    Column("jti", Text),
    Column("received_at", UtcDateTime, nullable=False),
    Index("feedback_card", "card"),
)

audit_record = Table(
    "audit_record",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("card_uuid", Text),  # None when no card was computed
    Column("service_id", Text, nullable=False),
    Column("hook_instance", Text),
    Column("issuer", Text),
    Column("tenant", Text),
    Column("user_id", Text),
    Column("patient", Text),  # HMAC-SHA256 pseudonym of context.patientId
    Column("encounter", Text),  # HMAC-SHA256 pseudonym of context.encounterId
    Column("outcome", Text, nullable=False),  # card | silent | age-gated | error:<status>
    Column("http_status", Integer, nullable=False),
    Column("returned", Boolean, nullable=False),  # whether the card reached the user
    Column("scorer_id", Text),
    Column("scorer_version", Text),
    Column("scorer_hash", Text),
    Column("summary", Text),  # the card's summary line, as shown (or withheld in silent mode)
    Column("pathway", Text),
    Column("endotype", Text),
    Column("persistence", Text),
    Column("anchor", JSON_VALUE),
    Column("gate_reason", Text),
    Column("inputs", JSON_VALUE, nullable=False),  # analyte, value, unit, time, code, id, role
    Column("missing", JSON_VALUE, nullable=False),  # analytes
    Column("excluded", JSON_VALUE, nullable=False),  # observation id, analyte, reason
    Column("data_source", Text),  # prefetch | query | prefetch+query | none
    Column("sources", JSON_VALUE, nullable=False),  # prefetch key -> source
    Column("fhir_calls", Integer, nullable=False),
    Column("fhir_seconds", Float, nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Column("error", Text),  # the error's short, patient-free message
    Index("audit_record_card_uuid", "card_uuid"),
    Index("audit_record_recorded_at", "recorded_at"),
    Index("audit_record_patient", "patient"),
)
