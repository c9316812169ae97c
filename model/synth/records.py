"""What the generator produces for each patient, and a whole cohort of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from model.cohort import OUTCOME_COLUMNS

__all__ = ["OUTCOME_COLUMNS", "Cohort", "LatentState", "OutcomeRow", "PatientRecord"]


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One row of outcomes.csv (the cohort contract, `model.cohort.OUTCOME_COLUMNS`)."""

    patient_id: str
    onset_time: str  # ISO 8601 with offset
    sex: str
    age_months: int
    sepsis: int
    picu_death: int
    complicated_course: int
    reference_endotype: str

    def without_label(self) -> OutcomeRow:
        """The same row with reference_endotype left empty."""
        return dataclasses.replace(self, reference_endotype="")


@dataclass(frozen=True, slots=True)
class LatentState:
    """What the generator knows and the files do not say directly (for checks and tests)."""

    patient_id: str
    onset_group: str
    day3_group: str
    day7_group: str
    ifng_high: bool


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """Everything generated for one synthetic patient."""

    patient: dict[str, Any]
    encounter: dict[str, Any]
    observations: tuple[dict[str, Any], ...]
    outcome: OutcomeRow
    latent: LatentState
    # the Phoenix inputs: vital-sign and laboratory Observations, Procedures, DeviceUseStatements
    # with their Devices, MedicationAdministrations
    phoenix: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Cohort:
    """A generated cohort: FHIR R4 dicts, outcome rows and the latent truth."""

    n: int
    seed: int
    patients: tuple[dict[str, Any], ...]
    encounters: tuple[dict[str, Any], ...]
    observations: tuple[dict[str, Any], ...]
    outcomes: tuple[OutcomeRow, ...]
    latent: tuple[LatentState, ...]
    labelled: bool = True  # False: reference_endotype withheld, as at a site without labels
    phoenix: tuple[dict[str, Any], ...] = ()  # every patient's Phoenix inputs

    @classmethod
    def from_records(cls, n: int, seed: int, records: Iterable[PatientRecord]) -> Cohort:
        """Collect per-patient records into one cohort."""
        items = list(records)
        return cls(
            n=n,
            seed=seed,
            patients=tuple(r.patient for r in items),
            encounters=tuple(r.encounter for r in items),
            observations=tuple(o for r in items for o in r.observations),
            outcomes=tuple(r.outcome for r in items),
            latent=tuple(r.latent for r in items),
            phoenix=tuple(resource for r in items for resource in r.phoenix),
        )

    def without_labels(self) -> Cohort:
        """The same cohort with reference_endotype left empty, as at a site without labels."""
        outcomes = tuple(row.without_label() for row in self.outcomes)
        return dataclasses.replace(self, outcomes=outcomes, labelled=False)
