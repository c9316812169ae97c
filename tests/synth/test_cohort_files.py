"""Cohort files: determinism, counts, synthetic tags, FHIR R4 validity, outcomes CSV, data card."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from model.cohort import load_cohort
from model.synth import (
    GENERATOR_VERSION,
    GROUPS,
    OUTCOME_COLUMNS,
    PARAMETERS,
    SYNTHETIC_TAGS,
    Cohort,
    generate_cohort,
    packaged_data_card,
    render_parameter_table,
    write_cohort,
)

COHORT_FILES = (
    "Patient.ndjson",
    "Encounter.ndjson",
    "Location.ndjson",
    "Observation.ndjson",
    "Procedure.ndjson",
    "Device.ndjson",
    "DeviceUseStatement.ndjson",
    "MedicationAdministration.ndjson",
    "outcomes.csv",
)


def _all_resources(cohort: Cohort) -> list[dict]:
    return [*cohort.patients, *cohort.encounters, *cohort.observations, *cohort.phoenix]


def _file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_same_n_and_seed_write_byte_identical_files(tmp_path: Path) -> None:
    write_cohort(generate_cohort(40, seed=5), tmp_path / "first")
    write_cohort(generate_cohort(40, seed=5), tmp_path / "second")
    first = _file_bytes(tmp_path / "first")
    assert set(first) == {*COHORT_FILES, "data_card.md"}
    assert first == _file_bytes(tmp_path / "second")


def test_another_seed_writes_different_observations(tmp_path: Path) -> None:
    write_cohort(generate_cohort(40, seed=5), tmp_path / "a")
    write_cohort(generate_cohort(40, seed=6), tmp_path / "b")
    first, second = (tmp_path / d / "Observation.ndjson" for d in ("a", "b"))
    assert first.read_bytes() != second.read_bytes()


def test_patient_records_do_not_depend_on_cohort_size() -> None:
    smaller, larger = generate_cohort(15, seed=9), generate_cohort(30, seed=9)
    assert larger.patients[:15] == smaller.patients
    assert larger.outcomes[:15] == smaller.outcomes


def test_every_patient_has_one_encounter_and_one_outcome_row(small_cohort: Cohort) -> None:
    patient_ids = [p["id"] for p in small_cohort.patients]
    assert len(patient_ids) == len(set(patient_ids)) == 120
    assert [row.patient_id for row in small_cohort.outcomes] == patient_ids
    assert sorted(e["subject"]["reference"] for e in small_cohort.encounters) == sorted(
        f"Patient/{pid}" for pid in patient_ids
    )


def test_observations_reference_their_patient_and_encounter(small_cohort: Cohort) -> None:
    encounter_of = {e["subject"]["reference"]: e["id"] for e in small_cohort.encounters}
    observation_ids = [o["id"] for o in small_cohort.observations]
    assert len(observation_ids) == len(set(observation_ids))
    assert len(observation_ids) > 120 * 10
    for observation in small_cohort.observations:
        subject = observation["subject"]["reference"]
        assert observation["encounter"]["reference"] == f"Encounter/{encounter_of[subject]}"


def test_every_encounter_stays_on_the_picu_location_the_files_hold(tmp_path: Path) -> None:
    cohort = generate_cohort(20, seed=3)
    write_cohort(cohort, tmp_path)
    (ward,) = [json.loads(line) for line in (tmp_path / "Location.ndjson").read_text().splitlines()]
    Location.model_validate(ward)
    assert ward["type"][0]["coding"][0]["code"] == "PEDICU"
    assert ward["meta"]["tag"] == list(SYNTHETIC_TAGS)
    for encounter in cohort.encounters:
        (stay,) = encounter["location"]
        assert stay["location"]["reference"] == f"Location/{ward['id']}"
        assert (stay["status"], stay["period"]) == ("completed", encounter["period"])


def test_every_resource_carries_both_synthetic_tags(small_cohort: Cohort) -> None:
    for resource in _all_resources(small_cohort):
        assert resource["meta"]["tag"] == list(SYNTHETIC_TAGS), resource["id"]


def test_patients_are_named_and_identified_as_synthetic(small_cohort: Cohort) -> None:
    for patient in small_cohort.patients:
        assert patient["name"][0]["family"] == "SYNTHETIC"
        assert "SYNTHETIC" in patient["name"][0]["text"]
        assert patient["identifier"][0]["value"].startswith("SYNTHETIC-")


def test_a_sample_of_resources_is_valid_fhir_r4(small_cohort: Cohort) -> None:
    for patient in small_cohort.patients[:30]:
        Patient.model_validate(patient)
    for encounter in small_cohort.encounters[:30]:
        Encounter.model_validate(encounter)
    for observation in small_cohort.observations[::7]:
        Observation.model_validate(observation)
    for resource in small_cohort.phoenix[::23]:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_no_result_is_dated_outside_the_picu_stay(small_cohort: Cohort) -> None:
    stays = {
        e["subject"]["reference"]: tuple(map(datetime.fromisoformat, e["period"].values()))
        for e in small_cohort.encounters
    }
    for resource in [*small_cohort.observations, *small_cohort.phoenix]:
        if resource["resourceType"] == "Device":
            continue
        period = next((resource[k] for k in resource if k.endswith("Period")), None)
        texts = list(period.values()) if period else [resource["effectiveDateTime"]]
        if len(texts[0]) == 10:  # date-only results are imprecise on purpose
            continue
        admitted, ended = stays[resource["subject"]["reference"]]
        for text in texts:
            assert admitted <= datetime.fromisoformat(text) <= ended, resource["id"]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_outcomes_csv_follows_the_cohort_contract(tmp_path: Path, small_cohort: Cohort) -> None:
    write_cohort(small_cohort, tmp_path)
    header, rows = _read_csv(tmp_path / "outcomes.csv")
    assert header == list(OUTCOME_COLUMNS)
    assert len(rows) == 120
    for row in rows:
        assert datetime.fromisoformat(row["onset_time"]).utcoffset() is not None
        assert row["sex"] in {"female", "male", "other", "unknown"}
        assert 1 <= int(row["age_months"]) <= 215
        assert {row["sepsis"], row["picu_death"], row["complicated_course"]} <= {"0", "1"}
        assert row["reference_endotype"] in GROUPS
        if row["picu_death"] == "1":
            assert row["complicated_course"] == "1"


def test_age_months_matches_the_patient_birth_date(small_cohort: Cohort) -> None:
    for patient, row in zip(small_cohort.patients, small_cohort.outcomes, strict=True):
        born = date.fromisoformat(patient["birthDate"])
        onset_day = datetime.fromisoformat(row.onset_time).date()
        months = (onset_day.year - born.year) * 12 + onset_day.month - born.month
        months -= onset_day.day < born.day
        assert months == row.age_months
        assert patient["gender"] == row.sex


def test_deaths_are_recorded_on_the_patient(small_cohort: Cohort) -> None:
    for patient, row in zip(small_cohort.patients, small_cohort.outcomes, strict=True):
        assert ("deceasedDateTime" in patient) == (row.picu_death == 1)


def test_unlabelled_cohort_leaves_reference_endotype_empty(tmp_path: Path) -> None:
    write_cohort(generate_cohort(10, seed=3, labelled=False), tmp_path)
    _, rows = _read_csv(tmp_path / "outcomes.csv")
    assert [row["reference_endotype"] for row in rows] == [""] * 10
    assert "withheld" in (tmp_path / "data_card.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_model_reader_loads_a_written_cohort(tmp_path: Path, small_cohort: Cohort) -> None:
    write_cohort(small_cohort, tmp_path)
    loaded = load_cohort(tmp_path, tmp_path / "outcomes.csv")
    assert len(loaded.outcomes) == 120
    assert loaded.n_synthetic_patients == loaded.n_patient_resources == 120
    phoenix_observations = [r for r in small_cohort.phoenix if r["resourceType"] == "Observation"]
    assert sum(map(len, loaded.observations.values())) == len(small_cohort.observations) + len(
        phoenix_observations
    )
    assert sum(map(len, loaded.phoenix.values())) == len(small_cohort.phoenix) - len(
        phoenix_observations
    )
    assert loaded.anchor_counts == {"Phoenix onset": 120, "outcomes onset_time": 0}


def test_packaged_data_card_lists_the_generator_parameters_as_they_are() -> None:
    card = packaged_data_card()
    table = card.split("<!-- parameters:begin -->\n")[1].split("<!-- parameters:end -->")[0]
    assert table == render_parameter_table()


def test_every_parameter_has_a_source_or_says_assumption() -> None:
    for row in PARAMETERS:
        assert row.source.strip(), row.key
    assumed = {row.key for row in PARAMETERS if row.source.startswith("assumption")}
    assert {"median.cxcl9.hyperinflammatory", "median.ifng.quiescent"} <= assumed
    assert len({row.key for row in PARAMETERS}) == len(PARAMETERS)


def test_written_data_card_says_synthetic_and_names_the_run(tmp_path: Path) -> None:
    write_cohort(generate_cohort(8, seed=77), tmp_path)
    card = (tmp_path / "data_card.md").read_text(encoding="utf-8")
    assert "SYNTHETIC — not patient data, not for clinical use" in card
    assert "seed: 77" in card
    assert "No published pediatric sepsis distributions for IFN-γ or CXCL9" in card


@pytest.mark.parametrize(("n", "seed"), [(-1, 0), (5, -2)])
def test_negative_size_or_seed_is_refused(n: int, seed: int) -> None:
    with pytest.raises(ValueError):
        generate_cohort(n, seed)


def test_naive_start_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        generate_cohort(3, 1, start=datetime(2024, 1, 1))


def test_packaged_data_card_names_the_generator_version() -> None:
    assert f"generator version **{GENERATOR_VERSION}**" in packaged_data_card()


def test_resources_share_no_mutable_parts() -> None:
    cohort = generate_cohort(3, seed=1)
    first, second = cohort.observations[0], cohort.observations[1]
    first["category"][0]["coding"][0]["code"] = "changed"
    first["meta"]["tag"][0]["code"] = "changed"
    cohort.encounters[0]["serviceType"]["coding"][0]["code"] = "changed"
    assert second["category"][0]["coding"][0]["code"] == "laboratory"
    assert second["meta"]["tag"][0]["code"] == "HTEST"
    assert cohort.encounters[1]["serviceType"]["coding"][0]["code"] == "PEDICU"
