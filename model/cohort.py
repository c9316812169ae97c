"""Read a cohort (FHIR Bulk Data NDJSON + outcomes CSV) and compute features the service's way.

Every Patient and Observation read is validated as FHIR R4B (fhir.resources); a line that is not
refuses the cohort with its file and line number.

Features come from the live service's own path: `extract` → `build_timeline` on a frame anchored
at the onset (now = onset + 48 h) → `model.features.feature_row`, which reads the early window.
The onset is found as the service finds it: the first hour with a Phoenix score of 2 or more,
computed from the cohort's own resources (vital signs, labs, Procedures, DeviceUseStatements,
MedicationAdministrations) with `model.phoenix_context.assess_phoenix`; only a child without a
Phoenix onset is anchored at the outcomes file's `onset_time` (`anchor_counts` says how many).
Only this module reads cohort files.
"""

from __future__ import annotations

import csv
import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from pydantic import ValidationError
from tqdm import tqdm

from fhir_mappings.encounters import encounter_facts
from fhir_mappings.limits import JsonTooDeep, loads_bounded
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel, load_panel
from model.assessment import Anchor, AnchorSource, Endotype, TimeFrame, Timeline
from model.context import PHOENIX_ORGAN_DYSFUNCTION, PHOENIX_SEPSIS, ContextSettings
from model.phoenix_context import PhoenixSettings, assess_phoenix
from model.timeline import build_timeline

ONSET_WINDOW = timedelta(hours=48)
OUTCOME_COLUMNS = (
    "patient_id",
    "onset_time",
    "sex",
    "age_months",
    "sepsis",
    "picu_death",
    "complicated_course",
    "reference_endotype",
)
SEXES = frozenset({"female", "male", "other", "unknown"})
REFERENCE_LABELS = frozenset(
    {Endotype.HYPERINFLAMMATORY.value, Endotype.INTERMEDIATE.value, Endotype.QUIESCENT.value}
)
SYNTHETIC_TAG = ("https://picu-endotype.org/fhir/CodeSystem/data-origin", "synthetic")
# resources read from a cohort are validated with these FHIR R4B models
FHIR_MODELS = {
    "Patient": Patient,
    "Encounter": Encounter,
    "Observation": Observation,
    "Procedure": Procedure,
    "Device": Device,
    "DeviceUseStatement": DeviceUseStatement,
    "MedicationAdministration": MedicationAdministration,
    "MedicationRequest": MedicationRequest,
}
# the Phoenix inputs besides Observations, read per patient (a Device through its `patient`)
PHOENIX_TYPES = (
    "Procedure",
    "Device",
    "DeviceUseStatement",
    "MedicationAdministration",
    "MedicationRequest",
)
PHOENIX_ANCHOR = "Phoenix onset"
OUTCOMES_ANCHOR = "outcomes onset_time"
MAX_AGE_MONTHS = 1200  # 100 years: a larger age is a data error
MIN_ONSET_YEAR, MAX_ONSET_YEAR = 1900, 9998  # onset + 48 h must stay a valid datetime
MAX_JSON_DEPTH = 64  # FHIR resources nest far less deeply


class CohortError(ValueError):
    """A cohort directory or outcomes file that cannot be read as the cohort contract says."""


@dataclass(frozen=True, slots=True)
class PatientOutcome:
    """One row of the outcomes file."""

    patient_id: str
    onset_time: datetime
    sex: str
    age_months: float
    sepsis: bool
    picu_death: bool
    complicated_course: bool
    reference_endotype: str | None


@dataclass(frozen=True)
class Cohort:
    """Outcomes plus each patient's Observation, Patient, Encounter and Phoenix resources."""

    outcomes: tuple[PatientOutcome, ...]
    observations: Mapping[str, list[dict[str, Any]]]
    n_patient_resources: int
    n_synthetic_patients: int
    patients: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    encounters: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    phoenix: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # PHOENIX_TYPES

    @functools.cached_property
    def anchors(self) -> dict[str, Anchor]:
        """Each patient's anchor: the Phoenix onset, else the outcomes file's onset_time."""
        return {row.patient_id: patient_anchor(self, row) for row in self.outcomes}

    @property
    def anchor_counts(self) -> dict[str, int]:
        """How many patients each anchor source anchored, by source name."""
        counts = dict.fromkeys((PHOENIX_ANCHOR, OUTCOMES_ANCHOR), 0)
        for anchor in self.anchors.values():
            counts[
                PHOENIX_ANCHOR if anchor.source is AnchorSource.PHOENIX else OUTCOMES_ANCHOR
            ] += 1
        return counts

    @property
    def all_synthetic(self) -> bool:
        """True when every Patient resource carries the synthetic data-origin tag."""
        return (
            self.n_patient_resources > 0 and self.n_synthetic_patients == self.n_patient_resources
        )

    @property
    def has_reference_labels(self) -> bool:
        """True when at least one patient has a reference endotype."""
        return any(row.reference_endotype for row in self.outcomes)


def read_outcomes(path: Path) -> tuple[PatientOutcome, ...]:
    """Parse the outcomes CSV, refusing rows that break the contract (with their line number)."""
    if not path.is_file():
        raise CohortError(f"outcomes file not found (or not a file): {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        try:
            missing = set(OUTCOME_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise CohortError(f"{path.name}: missing columns {sorted(missing)}")
            rows = tuple(_outcome(row, reader.line_num, path.name) for row in reader)
        except UnicodeDecodeError:
            raise CohortError(f"{path.name} line {reader.line_num + 1}: not UTF-8 text") from None
        except csv.Error as error:
            raise CohortError(f"{path.name} line {reader.line_num}: {error}") from None
    if len({row.patient_id for row in rows}) != len(rows):
        raise CohortError(f"{path.name}: a patient_id appears more than once")
    return rows


def _outcome(row: Mapping[str | None, Any], line: int, file_name: str) -> PatientOutcome:
    try:
        _check_row_shape(row)
        patient_id = row["patient_id"].strip()
        if not patient_id:
            raise ValueError("patient_id is empty")
        sex = row["sex"].strip()
        if sex not in SEXES:
            raise ValueError(f"sex {sex!r} is not one of {sorted(SEXES)}")
        label = row["reference_endotype"].strip() or None
        if label is not None and label not in REFERENCE_LABELS:
            raise ValueError(f"reference_endotype {label!r} is not a known endotype")
        return PatientOutcome(
            patient_id=patient_id,
            onset_time=_onset(row["onset_time"]),
            sex=sex,
            age_months=_age_months(row["age_months"]),
            sepsis=_flag(row["sepsis"]),
            picu_death=_flag(row["picu_death"]),
            complicated_course=_flag(row["complicated_course"]),
            reference_endotype=label,
        )
    except (KeyError, ValueError) as error:
        raise CohortError(f"{file_name} line {line}: {error}") from None


def _check_row_shape(row: Mapping[str | None, Any]) -> None:
    """Every column present, and no field beyond the header."""
    if None in row:
        raise ValueError("the row has more fields than the header")
    absent = [column for column in OUTCOME_COLUMNS if row.get(column) is None]
    if absent:
        raise ValueError(f"missing fields {absent}")


def _onset(text: str) -> datetime:
    """An onset time with a UTC offset, between the years 1900 and 9998."""
    onset = datetime.fromisoformat(text.strip())
    if onset.tzinfo is None:
        raise ValueError("onset_time has no UTC offset")
    if not MIN_ONSET_YEAR <= onset.year <= MAX_ONSET_YEAR:
        raise ValueError(
            f"onset_time year {onset.year} is outside {MIN_ONSET_YEAR}-{MAX_ONSET_YEAR}"
        )
    return onset


def _age_months(text: str) -> float:
    """An age in months: a finite number from 0 to MAX_AGE_MONTHS."""
    age = float(text)
    if not math.isfinite(age) or not 0 <= age <= MAX_AGE_MONTHS:
        raise ValueError(f"age_months {text.strip()!r} is not a number from 0 to {MAX_AGE_MONTHS}")
    return age


def _flag(text: str) -> bool:
    if text.strip() not in {"0", "1"}:
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return text.strip() == "1"


def read_resources(cohort_dir: Path, resource_type: str) -> Iterator[dict[str, Any]]:
    """Every resource in `<Type>*.ndjson` files (Bulk Data style), one valid R4B resource a line."""
    files = sorted(
        path
        for path in cohort_dir.glob(f"{resource_type}*.ndjson")
        if not path.name[len(resource_type)].isalpha()  # Device*, not DeviceUseStatement*
    )
    for path in files:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield _resource(raw, path, number, resource_type)


def _resource(raw: bytes, path: Path, number: int, resource_type: str) -> dict[str, Any]:
    where = f"{path.name} line {number}"
    try:
        resource = loads_bounded(raw.decode("utf-8"), MAX_JSON_DEPTH)
    except UnicodeDecodeError:
        raise CohortError(f"{where}: not UTF-8 text") from None
    except JsonTooDeep:
        raise CohortError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise CohortError(f"{where}: not valid JSON") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        raise CohortError(f"{where}: not a {resource_type} resource")
    _validate(resource, path, number)
    return resource


def _validate(resource: dict[str, Any], path: Path, number: int) -> None:
    """Refuse a resource that is not valid FHIR R4B; the message names fields, never values."""
    model = FHIR_MODELS.get(resource["resourceType"])
    if model is None:
        return
    try:
        model.model_validate(resource)
    except ValidationError as error:
        raise CohortError(
            f"{path.name} line {number}: not a valid {resource['resourceType']} "
            f"({_field_errors(error)})"
        ) from None


def _field_errors(error: ValidationError) -> str:
    """The first few validation errors by field and message, without the input values."""
    details = error.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'resource'}: {detail['msg']}"
        for detail in details[:3]
    )


def subject_id(resource: Mapping[str, Any]) -> str | None:
    """The id in `subject.reference` (a Device's `patient.reference`) when it is a Patient."""
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    parts = str(reference).rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    return None


def is_synthetic(resource: Mapping[str, Any]) -> bool:
    """True when the resource carries the synthetic data-origin tag."""
    tags = (resource.get("meta") or {}).get("tag") or []
    return any((tag.get("system"), tag.get("code")) == SYNTHETIC_TAG for tag in tags)


def load_cohort(cohort_dir: Path, outcomes_file: Path) -> Cohort:
    """Read outcomes and every resource the toolkit uses, validated, grouped by patient."""
    if not cohort_dir.is_dir():
        raise CohortError(f"cohort directory not found: {cohort_dir}")
    outcomes = read_outcomes(outcomes_file)
    kinds = ("Observation", "Encounter", *PHOENIX_TYPES, "Patient")
    return cohort_of(
        outcomes,
        (resource for kind in kinds for resource in read_resources(cohort_dir, kind)),
    )


def cohort_of(outcomes: tuple[PatientOutcome, ...], resources: Iterable[dict[str, Any]]) -> Cohort:
    """A cohort from outcomes and resources already read (or generated; not validated again),
    grouped by patient as `load_cohort` groups them, in the order given."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        by_kind[resource.get("resourceType", "")].append(resource)
    patients = by_kind["Patient"]
    return Cohort(
        outcomes=outcomes,
        observations=_by_patient(by_kind["Observation"]),
        n_patient_resources=len(patients),
        n_synthetic_patients=sum(is_synthetic(patient) for patient in patients),
        patients={patient["id"]: patient for patient in patients if "id" in patient},
        encounters=_by_patient(by_kind["Encounter"]),
        phoenix=_by_patient(r for kind in PHOENIX_TYPES for r in by_kind[kind]),
    )


def _by_patient(resources: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Resources grouped by the patient they belong to (others are left out)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in resources:
        patient = subject_id(resource)
        if patient is not None:
            grouped[patient].append(resource)
    return dict(grouped)


def patient_anchor(
    cohort: Cohort, row: PatientOutcome, settings: PhoenixSettings | None = None
) -> Anchor:
    """The service's anchor for a cohort child: its Phoenix onset in its encounter (the first hour
    scoring 2 or more, between the encounter start less the look-back and the course's end),
    else the outcomes file's onset_time."""
    settings = settings or PhoenixSettings()
    found = encounter_facts(cohort.encounters.get(row.patient_id, []), patient_id=row.patient_id)
    encounter = next((e for e in found.facts if e.start is not None), None)
    if encounter is not None and encounter.start is not None:
        end = encounter.end or row.onset_time + ONSET_WINDOW
        now = min(end, encounter.start + settings.course_span)
        context = assess_phoenix(
            patient=cohort.patients.get(row.patient_id),
            encounter=encounter,
            resources=[
                *cohort.observations.get(row.patient_id, []),
                *cohort.phoenix.get(row.patient_id, []),
            ],
            now=now,
            settings=settings,
            patient_id=row.patient_id,
        )
        onset = context.onset_time
        earliest = encounter.start - ContextSettings().look_back
        if onset is not None and earliest <= onset <= now:
            detail = PHOENIX_SEPSIS if context.infection else PHOENIX_ORGAN_DYSFUNCTION
            return Anchor(onset, AnchorSource.PHOENIX, detail)
    return Anchor(row.onset_time, AnchorSource.CONDITION, "onset_time of the outcomes file")


def onset_timeline(
    observations: Sequence[Mapping[str, Any]],
    *,
    patient_id: str,
    onset: datetime | Anchor,
    panel: Panel,
    window: timedelta = ONSET_WINDOW,
    now: datetime | None = None,
) -> Timeline:
    """A patient's timeline anchored at the onset, assessed at `now` (default onset + window)."""
    extraction = extract(list(observations), panel, patient_id=patient_id)
    return build_timeline(extraction, onset_frame(onset, window, now))


def onset_frame(
    onset: datetime | Anchor, window: timedelta, now: datetime | None = None
) -> TimeFrame:
    """A frame anchored at an anchor, or at a recorded onset time of organ dysfunction."""
    anchor = (
        onset
        if isinstance(onset, Anchor)
        else Anchor(onset, AnchorSource.CONDITION, "onset_time of the outcomes file")
    )
    return TimeFrame(now=now or anchor.time + window, anchor=anchor, window=window)


def cohort_timelines(
    cohort: Cohort, *, panel: Panel | None = None, progress: bool = True
) -> list[Timeline]:
    """One onset timeline per outcomes row, in outcomes order, anchored as the service anchors."""
    panel = panel or load_panel()
    rows = tqdm(cohort.outcomes, desc="features", unit="patient", disable=not progress)
    return [
        onset_timeline(
            cohort.observations.get(row.patient_id, []),
            patient_id=row.patient_id,
            onset=cohort.anchors[row.patient_id],
            panel=panel,
        )
        for row in rows
    ]
