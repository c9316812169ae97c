"""Reports over the shared database: cards joined to their feedback, and one card's basis.

`card_outcomes` reads every card the audit trail holds since a time, with the latest feedback on
each: accepted, overridden (with its reason), ignored (shown, no feedback) or silent (computed in
silent mode, never shown). `summarise` counts them by pathway, endotype, scorer version and
override reason. `card_basis` returns one card's audit record with its feedback.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from cds_service.storage import Database
from cds_service.storage.schema import audit_record, feedback

REPORT_COLUMNS = ("pathway", "endotype", "scorer", "status", "override_reason", "cards")


@dataclass(frozen=True)
class CardOutcome:
    """One card from the audit trail and what became of it."""

    card_uuid: str
    recorded_at: datetime
    pathway: str | None
    endotype: str | None
    scorer: str  # id/version
    status: str  # accepted | overridden | ignored | silent
    override_reason: str | None  # system|code of the override reason, when one was given


def _status(returned: bool, latest: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """What became of a card: its latest feedback, else ignored (shown) or silent (not shown)."""
    if latest is None:
        return ("ignored" if returned else "silent"), None
    reason = None
    if latest["override_code"]:
        reason = f"{latest['override_system'] or ''}|{latest['override_code']}"
    return latest["outcome"], reason


def _latest_feedback(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The latest feedback item (by outcome time, then arrival) of each card."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["outcome_timestamp"], r["id"])):
        latest[row["card"]] = row
    return latest


def card_outcomes(
    database: Database, since: datetime, until: datetime | None = None
) -> list[CardOutcome]:
    """Every card recorded from `since` (to `until`), with its latest feedback."""
    cards = select(audit_record).where(
        audit_record.c.card_uuid.is_not(None), audit_record.c.recorded_at >= since
    )
    if until is not None:
        cards = cards.where(audit_record.c.recorded_at < until)
    with database.begin() as connection:
        records = [
            dict(row._mapping) for row in connection.execute(cards.order_by(audit_record.c.id))
        ]
        uuids = [record["card_uuid"] for record in records]
        answers = [
            dict(row._mapping)
            for chunk in _chunks(uuids, 500)
            for row in connection.execute(select(feedback).where(feedback.c.card.in_(chunk)))
        ]
    latest = _latest_feedback(answers)
    outcomes = []
    for record in records:
        status, reason = _status(record["returned"], latest.get(record["card_uuid"]))
        outcomes.append(
            CardOutcome(
                card_uuid=record["card_uuid"],
                recorded_at=record["recorded_at"],
                pathway=record["pathway"],
                endotype=record["endotype"],
                scorer=f"{record['scorer_id']}/{record['scorer_version']}",
                status=status,
                override_reason=reason,
            )
        )
    return outcomes


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def summarise(outcomes: Iterable[CardOutcome]) -> list[dict[str, Any]]:
    """Card counts by pathway, endotype, scorer, status and override reason, largest first."""
    counts = Counter(
        (o.pathway or "", o.endotype or "", o.scorer, o.status, o.override_reason or "")
        for o in outcomes
    )
    rows = [dict(zip(REPORT_COLUMNS, (*key, count), strict=True)) for key, count in counts.items()]
    return sorted(rows, key=lambda row: (-row["cards"], row["pathway"], row["status"]))


def write_csv(rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    """The summary rows as CSV with a header line."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def print_table(rows: Sequence[Mapping[str, Any]], stream: TextIO) -> None:
    """The summary rows as an aligned text table."""
    widths = {
        column: max([len(column), *(len(str(row[column])) for row in rows)])
        for column in REPORT_COLUMNS
    }
    print("  ".join(column.ljust(widths[column]) for column in REPORT_COLUMNS), file=stream)
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in REPORT_COLUMNS), file=stream)


def card_basis(database: Database, card_uuid: str) -> dict[str, Any] | None:
    """One card's audit record and every feedback item on it, or None if the trail lacks it."""
    with database.begin() as connection:
        record = connection.execute(
            select(audit_record).where(audit_record.c.card_uuid == card_uuid)
        ).first()
        if record is None:
            return None
        answers = connection.execute(
            select(feedback).where(feedback.c.card == card_uuid).order_by(feedback.c.id)
        )
        return {"record": dict(record._mapping), "feedback": [dict(r._mapping) for r in answers]}
