"""The audit trail: one record per hook answered (card, silent card, gated, failed), never a token.

`build_record` is pure: it turns what the hook flow knows (the call, the scorer's assessment and
timeline, the data sources, timings) into an `AuditRecord` of plain values. Patient and encounter
ids appear only as keyed pseudonyms, HMAC-SHA256 with the site's key (`pseudonym`). `AuditTrail`
writes records to the shared database, reads one back by card uuid, and purges old ones.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from cds_service.storage.database import Database
from cds_service.storage.schema import audit_record
from fhir_mappings.measurement import Exclusion, Measurement
from model.assessment import Assessment, ScorerInfo, Timeline

logger = logging.getLogger(__name__)

PURGE_INTERVAL = timedelta(hours=1)
_KEY_BYTES = 32


# --- pseudonyms ---


def pseudonym(key: bytes, resource_type: str, resource_id: str | None) -> str | None:
    """HMAC-SHA256 of `Type/id` under the site key, hex; None when there is no id."""
    if not resource_id:
        return None
    message = f"{resource_type}/{resource_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def load_pseudonym_key(configured: str | None, key_file: Path, *, may_generate: bool) -> bytes:
    """The site key: from settings, else from `key_file`, else a new one written there (0600)."""
    if configured:
        return configured.encode()
    try:
        return key_file.read_text().strip().encode()
    except FileNotFoundError:
        if not may_generate:
            raise
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first
        return key_file.read_text().strip().encode()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
    logger.warning("generated a new pseudonym key at %s: keep it with the database", key_file)
    return key_file.read_text().strip().encode()


# --- the record ---


@dataclass(frozen=True)
class HookCall:
    """Who called which hook about whom (raw ids: they are pseudonymised in the record)."""

    service_id: str
    hook_instance: str | None = None
    issuer: str | None = None
    tenant: str | None = None
    user_id: str | None = None
    patient_id: str | None = None
    encounter_id: str | None = None


@dataclass(frozen=True)
class HookResult:
    """What the hook flow produced; assessment and timeline are absent when it stopped early."""

    outcome: str  # card | silent | age-gated | error:<status>
    http_status: int
    returned: bool  # whether a card reached the user
    scorer: ScorerInfo | None = None
    card: Mapping[str, Any] | None = None
    assessment: Assessment | None = None
    timeline: Timeline | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    fhir_calls: int = 0
    fhir_seconds: float = 0.0
    duration_seconds: float = 0.0
    error: str | None = None
    persistence: str | None = None
    anchor: Mapping[str, Any] | None = None
    gate_reason: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One row of the audit trail, as plain values."""

    recorded_at: datetime
    card_uuid: str | None
    service_id: str
    hook_instance: str | None
    issuer: str | None
    tenant: str | None
    user_id: str | None
    patient: str | None
    encounter: str | None
    outcome: str
    http_status: int
    returned: bool
    scorer_id: str | None
    scorer_version: str | None
    scorer_hash: str | None
    summary: str | None
    pathway: str | None
    endotype: str | None
    persistence: str | None
    anchor: Mapping[str, Any] | None
    gate_reason: str | None
    inputs: Sequence[Mapping[str, Any]]
    missing: Sequence[str]
    excluded: Sequence[Mapping[str, Any]]
    data_source: str | None
    sources: Mapping[str, str]
    fhir_calls: int
    fhir_seconds: float
    duration_seconds: float
    error: str | None

    def row(self) -> dict[str, Any]:
        """The record as a table row (its values are plain data already: no deep copy)."""
        row = {name: getattr(self, name) for name in _RECORD_FIELDS}
        row["sources"] = dict(self.sources)
        if self.anchor is not None:
            row["anchor"] = dict(self.anchor)
        return row


_RECORD_FIELDS = tuple(item.name for item in fields(AuditRecord))
_INSERT_RECORD = insert(audit_record)


def _input(measurement: Measurement, role: str) -> dict[str, Any]:
    """One result that informed the assessment."""
    return {
        "analyte": measurement.analyte,
        "value": measurement.value,
        "unit": measurement.unit,
        "comparator": measurement.comparator,
        "time": measurement.time.astimezone(UTC).isoformat(),
        "system": measurement.system,
        "code": measurement.code,
        "status": measurement.status,
        "observation_id": measurement.observation_id,
        "role": role,
    }


def _inputs(assessment: Assessment) -> list[dict[str, Any]]:
    """Every result of every series the scorer used, each marked baseline, latest or series."""
    found = []
    for series in assessment.used.values():
        last = len(series.values) - 1
        for index, measurement in enumerate(series.values):
            role = "latest" if index == last else "baseline" if index == 0 else "series"
            found.append(_input(measurement, role))
    return found


def _exclusion(exclusion: Exclusion) -> dict[str, Any]:
    return {
        "reason": exclusion.reason.value,
        "analyte": exclusion.analyte,
        "code": exclusion.code,
        "time": exclusion.time.astimezone(UTC).isoformat() if exclusion.time else None,
        "observation_id": exclusion.observation_id,
    }


def _excluded(timeline: Timeline) -> list[dict[str, Any]]:
    """Results recognised but not used: excluded, older than the look-back, preliminary."""
    excluded = [_exclusion(exclusion) for exclusion in timeline.exclusions]
    for reason, measurements in (
        ("older-than-look-back", timeline.older.values()),
        ("preliminary", timeline.preliminary),
    ):
        excluded += [
            {
                "reason": reason,
                "analyte": m.analyte,
                "code": m.code,
                "time": m.time.astimezone(UTC).isoformat(),
                "observation_id": m.observation_id,
            }
            for m in measurements
        ]
    return excluded


def data_source(sources: Mapping[str, str]) -> str:
    """`prefetch`, `query`, `prefetch+query` or `none`: where the hook's data came from."""
    used = {"query" if "query" in value else "prefetch" for value in sources.values()}
    if "query" in used and any(value.startswith("prefetch") for value in sources.values()):
        return "prefetch+query"
    return next(iter(used)) if used else "none"


def build_record(
    call: HookCall, result: HookResult, *, key: bytes, recorded_at: datetime
) -> AuditRecord:
    """The audit record of one hook call: pseudonymised, no token, every input with its basis."""
    assessment, timeline, scorer, card = (
        result.assessment,
        result.timeline,
        result.scorer,
        result.card or {},
    )
    return AuditRecord(
        recorded_at=recorded_at,
        card_uuid=card.get("uuid"),
        service_id=call.service_id,
        hook_instance=call.hook_instance,
        issuer=call.issuer,
        tenant=call.tenant,
        user_id=call.user_id,
        patient=pseudonym(key, "Patient", call.patient_id),
        encounter=pseudonym(key, "Encounter", call.encounter_id),
        outcome=result.outcome,
        http_status=result.http_status,
        returned=result.returned,
        scorer_id=scorer.id if scorer else None,
        scorer_version=scorer.version if scorer else None,
        scorer_hash=scorer.content_hash if scorer else None,
        summary=card.get("summary"),
        pathway=assessment.pathway.value if assessment else None,
        endotype=assessment.endotype.value if assessment else None,
        persistence=result.persistence,
        anchor=result.anchor,
        gate_reason=result.gate_reason,
        inputs=_inputs(assessment) if assessment else [],
        missing=list(assessment.missing) if assessment else [],
        excluded=_excluded(timeline) if timeline else [],
        data_source=data_source(result.sources) if result.sources else None,
        sources=dict(result.sources),
        fhir_calls=result.fhir_calls,
        fhir_seconds=round(result.fhir_seconds, 6),
        duration_seconds=round(result.duration_seconds, 6),
        error=result.error,
    )


# --- the trail ---


class AuditTrail:
    """Audit records in the shared database: written before the hook answers, purged by age."""

    def __init__(self, database: Database, key: bytes, retention: timedelta) -> None:
        self.database = database
        self.key = key
        self.retention = retention
        self._purge_lock = threading.Lock()
        self._next_purge = datetime.min.replace(tzinfo=UTC)

    def record(self, call: HookCall, result: HookResult) -> AuditRecord:
        """Build, write and commit the record of one hook call."""
        now = datetime.now(UTC)
        built = build_record(call, result, key=self.key, recorded_at=now)
        self.write(built)
        self._purge_if_due(now)
        return built

    def write(self, record: AuditRecord) -> None:
        """Insert one record; committed when this returns."""
        with self.database.begin() as connection:
            connection.execute(_INSERT_RECORD, record.row())

    def for_card(self, card_uuid: str) -> list[dict[str, Any]]:
        """Every record of one card uuid (normally one), oldest first."""
        query = (
            select(audit_record)
            .where(audit_record.c.card_uuid == card_uuid)
            .order_by(audit_record.c.id)
        )
        with self.database.begin() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def _purge_if_due(self, now: datetime) -> None:
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_INTERVAL
        self.purge(now)

    def purge(self, now: datetime | None = None) -> int:
        """Delete records older than the retention; return how many."""
        cutoff = (now or datetime.now(UTC)) - self.retention
        with self.database.begin() as connection:
            deleted = connection.execute(
                delete(audit_record).where(audit_record.c.recorded_at < cutoff)
            ).rowcount
        if deleted:
            logger.info("purged %d audit records older than %s", deleted, cutoff.isoformat())
        return deleted
