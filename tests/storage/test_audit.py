"""The audit record (a pure function of the hook's outcome) and the trail on both engines."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import pytest

from cds_service.audit import (
    AuditTrail,
    HookCall,
    HookResult,
    build_record,
    data_source,
    load_pseudonym_key,
    pseudonym,
)
from cds_service.storage import Database
from fhir_mappings.measurement import Exclusion, ExclusionReason
from model.assessment import ScorerInfo
from model.rules import load_rule_scorer
from tests.scoring.factories import NOW, result, timeline_of

KEY = b"site-secret-key"
CALL = HookCall(
    service_id="picu-immune-endotype",
    hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    issuer="https://ehr.example.org",
    tenant="north",
    user_id="Practitioner/7",
    patient_id="patient-123",
    encounter_id="enc-9",
)


def _assessed_result(**changes: object) -> HookResult:
    """A real rules assessment of IL-6, IFN-γ, ferritin and CRP, one IL-6 twice, one exclusion."""
    timeline = timeline_of(
        result("il6", 60.0, hours_ago=20, observation_id="obs-il6-a"),
        result("il6", 140.0, hours_ago=2, observation_id="obs-il6-b"),
        result("ifng", 80.0, hours_ago=2, observation_id="obs-ifng"),
        result("ferritin", 900.0, hours_ago=3, observation_id="obs-fer"),
        exclusions=(
            Exclusion(
                ExclusionReason.UNIT_NOT_CONVERTIBLE,
                "unit mmol/L",
                analyte="crp",
                observation_id="obs-crp",
            ),
        ),
    )
    scorer = load_rule_scorer()
    assessment = scorer.assess(timeline)
    values = {
        "outcome": "card",
        "http_status": 200,
        "returned": True,
        "scorer": scorer.info,
        "card": {"uuid": "card-1", "summary": "Biomarkers suggest ..."},
        "assessment": assessment,
        "timeline": timeline,
        "sources": {"patient": "prefetch", "il6": "query"},
        "fhir_calls": 3,
        "fhir_seconds": 0.12,
        "duration_seconds": 0.2,
    }
    values.update(changes)
    return HookResult(**values)  # type: ignore[arg-type]


def test_the_pseudonym_is_a_keyed_hmac_of_the_reference_and_never_the_id():
    expected = hmac.new(KEY, b"Patient/patient-123", hashlib.sha256).hexdigest()

    assert pseudonym(KEY, "Patient", "patient-123") == expected
    assert pseudonym(b"another-key", "Patient", "patient-123") != expected
    assert pseudonym(KEY, "Encounter", "patient-123") != expected
    assert pseudonym(KEY, "Patient", None) is None


def test_a_record_carries_the_basis_of_the_card_and_no_raw_patient_id():
    result = _assessed_result()

    record = build_record(CALL, result, key=KEY, recorded_at=NOW)

    assert record.card_uuid == "card-1"
    assert record.patient == pseudonym(KEY, "Patient", "patient-123")
    assert record.encounter == pseudonym(KEY, "Encounter", "enc-9")
    assert "patient-123" not in repr(record.row())
    assert (record.user_id, record.issuer, record.tenant) == (
        "Practitioner/7",
        "https://ehr.example.org",
        "north",
    )
    assert (record.pathway, record.endotype) == (
        result.assessment.pathway.value,
        result.assessment.endotype.value,
    )
    assert record.scorer_version == result.scorer.version
    assert record.scorer_hash == result.scorer.content_hash
    il6 = [item for item in record.inputs if item["analyte"] == "il6"]
    assert [(item["value"], item["role"], item["observation_id"]) for item in il6] == [
        (60.0, "baseline", "obs-il6-a"),
        (140.0, "latest", "obs-il6-b"),
    ]
    assert il6[1]["unit"] == "pg/mL"
    assert il6[1]["time"] == (NOW - timedelta(hours=2)).isoformat()
    assert "crp" in record.missing
    assert record.excluded == [
        {
            "reason": "unit-not-convertible",
            "analyte": "crp",
            "code": None,
            "time": None,
            "observation_id": "obs-crp",
        }
    ]
    assert record.data_source == "prefetch+query"
    assert (record.fhir_calls, record.fhir_seconds) == (3, 0.12)


def test_a_failed_hook_is_recorded_with_its_status_and_without_a_card():
    result = HookResult(outcome="error:412", http_status=412, returned=False, error="PICU-412")

    record = build_record(CALL, result, key=KEY, recorded_at=NOW)

    assert (record.card_uuid, record.pathway, record.inputs) == (None, None, [])
    assert (record.outcome, record.http_status, record.error) == ("error:412", 412, "PICU-412")


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"a": "prefetch", "b": "prefetch:empty"}, "prefetch"),
        ({"a": "query", "b": "query:not-found"}, "query"),
        ({"a": "prefetch", "b": "query"}, "prefetch+query"),
        ({"a": "prefetch+query:next-pages"}, "prefetch+query"),
        ({}, "none"),
    ],
)
def test_the_data_source_summarises_every_key(sources: dict[str, str], expected: str):
    assert data_source(sources) == expected


def test_a_generated_key_is_written_once_and_read_back(tmp_path: Path):
    key_file = tmp_path / "state" / "pseudonym.key"

    first = load_pseudonym_key(None, key_file, may_generate=True)

    assert len(first) == 64
    assert load_pseudonym_key(None, key_file, may_generate=True) == first
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert load_pseudonym_key("configured", key_file, may_generate=True) == b"configured"


def test_a_missing_key_file_is_an_error_where_keys_may_not_be_generated(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_pseudonym_key(None, tmp_path / "absent.key", may_generate=False)


def test_a_written_record_reads_back_with_its_inputs(database: Database):
    trail = AuditTrail(database, KEY, timedelta(days=30))

    written = trail.record(CALL, _assessed_result())

    [row] = trail.for_card("card-1")
    assert row["patient"] == written.patient
    assert row["inputs"] == written.inputs
    assert row["excluded"] == written.excluded
    assert row["sources"] == {"patient": "prefetch", "il6": "query"}
    assert row["returned"] is True
    assert abs(row["recorded_at"] - written.recorded_at) < timedelta(milliseconds=1)


def test_records_older_than_the_retention_are_purged(database: Database):
    trail = AuditTrail(database, KEY, timedelta(days=30))
    old = build_record(CALL, _assessed_result(card={"uuid": "old"}), key=KEY, recorded_at=NOW)
    young_time = NOW + timedelta(days=20)
    young = build_record(
        CALL, _assessed_result(card={"uuid": "young"}), key=KEY, recorded_at=young_time
    )
    trail.write(old)
    trail.write(young)

    assert trail.purge(NOW + timedelta(days=31)) == 1

    assert trail.for_card("old") == []
    assert len(trail.for_card("young")) == 1


def test_a_scorer_without_a_hash_is_recorded_as_such():
    info = ScorerInfo(id="x", version="1", kind="rules", description="d")

    record = build_record(CALL, _assessed_result(scorer=info), key=KEY, recorded_at=NOW)

    assert (record.scorer_id, record.scorer_hash) == ("x", None)
