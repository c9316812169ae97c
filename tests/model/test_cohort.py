"""The cohort reader follows the cohort contract and features use the service's own path."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import numpy as np
import pytest

from fhir_mappings.panel import load_panel
from model.cohort import (
    CohortError,
    cohort_of,
    load_cohort,
    onset_timeline,
    read_outcomes,
    read_resources,
    subject_id,
)
from model.features import feature_row
from model.synth import generate_cohort, write_cohort

HEADER = (
    "patient_id,onset_time,sex,age_months,sepsis,picu_death,complicated_course,reference_endotype"
)


def _outcomes(tmp_path, *rows: str):
    path = tmp_path / "outcomes.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_outcomes_row_is_parsed_with_offset_and_flags(tmp_path):
    rows = read_outcomes(_outcomes(tmp_path, "p1,2025-01-02T03:04:00-05:00,female,30,1,0,1,"))
    row = rows[0]
    assert row.onset_time.utcoffset() == timedelta(hours=-5)
    assert (row.sepsis, row.picu_death, row.complicated_course) == (True, False, True)
    assert row.reference_endotype is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p1,2025-01-02T03:04:00,female,30,1,0,1,", "offset"),
        ("p1,2025-01-02T03:04:00Z,woman,30,1,0,1,", "sex"),
        ("p1,2025-01-02T03:04:00Z,female,30,yes,0,1,", "0 or 1"),
        ("p1,2025-01-02T03:04:00Z,female,30,1,0,1,group-c", "endotype"),
    ],
)
def test_bad_outcomes_row_is_refused_with_its_line_number(tmp_path, row, message):
    with pytest.raises(CohortError, match=f"line 2: .*{message}"):
        read_outcomes(_outcomes(tmp_path, row))


def test_outcomes_without_a_contract_column_are_refused(tmp_path):
    path = tmp_path / "outcomes.csv"
    path.write_text("patient_id,onset_time\np1,2025-01-02T03:04:00Z\n")
    with pytest.raises(CohortError, match="missing columns"):
        read_outcomes(path)


def test_bulk_export_file_parts_are_all_read(small_cohort_dir, tmp_path):
    lines = (small_cohort_dir / "Observation.ndjson").read_text().splitlines()
    half = len(lines) // 2
    (tmp_path / "Observation.000.ndjson").write_text("\n".join(lines[:half]) + "\n")
    (tmp_path / "Observation.001.ndjson").write_text("\n".join(lines[half:]) + "\n")
    assert sum(1 for _ in read_resources(tmp_path, "Observation")) == len(lines)


def test_line_of_another_resource_type_is_refused(tmp_path):
    (tmp_path / "Observation.ndjson").write_text(json.dumps({"resourceType": "Patient"}) + "\n")
    with pytest.raises(CohortError, match="line 1: not a Observation"):
        list(read_resources(tmp_path, "Observation"))


def test_subject_id_reads_relative_and_absolute_patient_references():
    assert subject_id({"subject": {"reference": "Patient/abc"}}) == "abc"
    assert subject_id({"subject": {"reference": "https://ehr.example/fhir/Patient/x1"}}) == "x1"
    assert subject_id({"subject": {"reference": "Group/g"}}) is None


def test_synthetic_cohort_is_recognised_by_its_tags(small_cohort):
    assert small_cohort.all_synthetic
    assert small_cohort.has_reference_labels


@pytest.mark.slow
def test_untagged_patients_make_the_cohort_not_synthetic(small_cohort_dir, tmp_path):
    for path in small_cohort_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    patients = [json.loads(line) for line in (tmp_path / "Patient.ndjson").read_text().splitlines()]
    patients[0].pop("meta")
    (tmp_path / "Patient.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    assert not load_cohort(tmp_path, tmp_path / "outcomes.csv").all_synthetic


def _observation(patient: str, minutes_after_onset: int, value: float, onset) -> dict:
    moment = onset + timedelta(minutes=minutes_after_onset)
    return {
        "resourceType": "Observation",
        "id": f"o{minutes_after_onset}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": moment.isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": "ng/mL",
            "system": "http://unitsofmeasure.org",
            "code": "ng/mL",
        },
    }


def test_onset_timeline_keeps_the_48_hours_after_onset(small_cohort):
    onset = small_cohort.outcomes[0].onset_time
    observations = [
        _observation("p", 60, 400.0, onset),
        _observation("p", 47 * 60, 800.0, onset),
        _observation("p", 50 * 60, 2000.0, onset),
    ]
    timeline = onset_timeline(observations, patient_id="p", onset=onset, panel=load_panel())
    assert [m.value for m in timeline.series["ferritin"].values] == [400.0, 800.0]
    assert feature_row(timeline, ("ferritin",))[0] == 800.0


def test_every_outcomes_row_gets_a_timeline_with_its_own_observations(small_cohort):
    from model.cohort import cohort_timelines

    timelines = cohort_timelines(small_cohort, progress=False)
    assert len(timelines) == len(small_cohort.outcomes)
    first = small_cohort.outcomes[0]
    assert timelines[0].now == first.onset_time + timedelta(hours=48)
    observed = np.mean([bool(t.series) for t in timelines])
    assert observed > 0.5


def test_observation_that_is_not_valid_r4b_is_refused_with_its_line(small_cohort_dir, tmp_path):
    [first, second, *_] = (small_cohort_dir / "Observation.ndjson").read_text().splitlines()
    broken = json.loads(second)
    broken["valueQuantity"]["value"] = "secret-value-123"
    (tmp_path / "Observation.ndjson").write_text(f"{first}\n{json.dumps(broken)}\n")
    with pytest.raises(CohortError, match="line 2: not a valid Observation") as refused:
        list(read_resources(tmp_path, "Observation"))
    assert "valueQuantity.value" in str(refused.value)
    assert "secret-value-123" not in str(refused.value)


def test_a_generated_cohort_grouped_in_memory_equals_the_one_read_from_its_files(tmp_path):
    generated = generate_cohort(12, seed=5)
    write_cohort(generated, tmp_path)
    from_files = load_cohort(tmp_path, tmp_path / "outcomes.csv")
    resources = [
        *generated.patients,
        *generated.encounters,
        *generated.observations,
        *generated.phoenix,
    ]
    in_memory = cohort_of(from_files.outcomes, resources)
    for part in ("observations", "encounters", "phoenix", "patients", "n_synthetic_patients"):
        assert getattr(in_memory, part) == getattr(from_files, part), part
    assert in_memory.anchors == from_files.anchors
