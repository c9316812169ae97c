"""`report overrides` joins cards to their feedback; `report audit` shows one card's basis."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.audit import AuditTrail, build_record
from cds_service.auth import CdsClient
from cds_service.cli import main
from cds_service.feedback import FeedbackStore
from cds_service.models import FeedbackItem
from cds_service.reports import card_basis, card_outcomes, summarise
from cds_service.storage import Database
from model.assessment import ScorerInfo
from tests.storage.test_audit import CALL, KEY, _assessed_result

CLIENT = CdsClient(
    iss="https://ehr.example.org", tenant=None, jti="j", fhir_servers=(), authenticated=True
)
SCORER = ScorerInfo(id="rules", version="1.0.0", kind="rules", description="d")
REASON_SYSTEM = "https://example.org/override-reasons"


def _card(trail: AuditTrail, *, returned: bool = True, at: datetime | None = None) -> str:
    """Record one card in the audit trail; return its uuid."""
    card_uuid = str(uuid.uuid4())
    result = _assessed_result(
        card={"uuid": card_uuid, "summary": "s"},
        returned=returned,
        outcome="card" if returned else "silent",
        scorer=SCORER,
    )
    trail.write(build_record(CALL, result, key=KEY, recorded_at=at or datetime.now(UTC)))
    return card_uuid


def _feedback(
    store: FeedbackStore, card: str, outcome: str, code: str | None = None, minute: int = 0
) -> None:
    item = {
        "card": card,
        "outcome": outcome,
        "outcomeTimestamp": f"2026-01-01T00:{minute:02d}:00Z",
    }
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
    if code:
        item["overrideReason"] = {"reason": {"system": REASON_SYSTEM, "code": code}}
    store.store(
        "picu-immune-endotype", [FeedbackItem.model_validate(item)], CLIENT, datetime.now(UTC)
    )


@pytest.fixture
def trail(database: Database) -> AuditTrail:
    return AuditTrail(database, KEY, timedelta(days=30))


def test_cards_are_counted_as_accepted_overridden_ignored_or_silent(
    database: Database, trail: AuditTrail
):
    store = FeedbackStore(database)
    accepted, overridden, changed, ignored = (_card(trail) for _ in range(4))
    silent = _card(trail, returned=False)
    _feedback(store, accepted, "accepted")
    _feedback(store, overridden, "overridden", "not-relevant")
    _feedback(store, changed, "accepted", minute=1)
    _feedback(store, changed, "overridden", "already-treated", minute=5)

    outcomes = {
        o.card_uuid: (o.status, o.override_reason)
        for o in card_outcomes(database, datetime.now(UTC) - timedelta(hours=1))
    }

    assert outcomes == {
        accepted: ("accepted", None),
        overridden: ("overridden", f"{REASON_SYSTEM}|not-relevant"),
        changed: ("overridden", f"{REASON_SYSTEM}|already-treated"),
        ignored: ("ignored", None),
        silent: ("silent", None),
    }


def test_the_summary_groups_by_pathway_endotype_scorer_status_and_reason(
    database: Database, trail: AuditTrail
):
    store = FeedbackStore(database)
    for _ in range(3):
        _feedback(store, _card(trail), "overridden", "not-relevant")
    _card(trail)
    _card(trail, at=datetime.now(UTC) - timedelta(days=3))  # before --since

    rows = summarise(card_outcomes(database, datetime.now(UTC) - timedelta(days=1)))

    pathway = _assessed_result().assessment.pathway.value
    assert [
        (r["pathway"], r["scorer"], r["status"], r["override_reason"], r["cards"]) for r in rows
    ] == [
        (pathway, "rules/1.0.0", "overridden", f"{REASON_SYSTEM}|not-relevant", 3),
        (pathway, "rules/1.0.0", "ignored", "", 1),
    ]


def test_report_commands_print_and_write_csv(
    database: Database,
    trail: AuditTrail,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    card = _card(trail)
    _feedback(FeedbackStore(database), card, "overridden", "not-relevant")
    monkeypatch.setenv("PICU_ENDOTYPE_DATABASE_URL", database.url.render_as_string(False))
    monkeypatch.setenv("PICU_ENDOTYPE_AUDIT__PSEUDONYM_KEY", "k")
    out = tmp_path / "overrides.csv"

    assert main(["report", "overrides", "--since", "2000-01-01", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 cards recorded" in printed and "not-relevant" in printed
    [row] = list(csv.DictReader(out.open()))
    assert (row["status"], row["cards"]) == ("overridden", "1")

    assert main(["report", "audit", "--card", card]) == 0
    basis = capsys.readouterr().out
    assert card in basis
    assert "Observation/obs-il6-b" in basis
    assert "feedback: overridden" in basis
    assert "patient-123" not in basis
    assert main(["report", "audit", "--card", str(uuid.uuid4())]) == 1


def test_card_basis_is_none_for_an_unknown_card(database: Database):
    assert card_basis(database, "no-such-card") is None


def test_db_commands_upgrade_and_show_the_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("PICU_ENDOTYPE_STATE_DIR", str(tmp_path / "state"))

    assert main(["db", "current"]) == 0
    assert "schema empty" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "schema empty -> 0001" in capsys.readouterr().out
    assert main(["db", "purge"]) == 0
    assert "purged 0 audit records" in capsys.readouterr().out
