"""Cohort files: FHIR Bulk Data NDJSON, outcomes.csv and the data card, byte-identical per seed.

The only module of the generator that writes: `write_records` streams patient records, and
`write_cohort` writes an in-memory cohort; both give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from model.synth.records import OUTCOME_COLUMNS, Cohort, OutcomeRow, PatientRecord
from model.synth.render import cohort_picu_location

GENERATOR_VERSION = "1.2.0"
DATA_CARD_RESOURCE = "cohort_data_card.md"


def _ndjson_line(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n"


RESOURCE_FILES: tuple[str, ...] = (
    "Patient",
    "Encounter",
    "Location",
    "Observation",
    "Procedure",
    "Device",
    "DeviceUseStatement",
    "MedicationAdministration",
)


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What was written: counts per file, the seed and whether labels were kept."""

    seed: int
    patients: int
    encounters: int
    locations: int
    observations: int
    procedures: int
    devices: int
    device_use_statements: int
    medication_administrations: int
    labelled: bool


def _write_lines(handle: io.TextIOBase, resources_: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    for resource in resources_:
        handle.write(_ndjson_line(resource))
        count += 1
    return count


def _open_text(path: Path) -> io.TextIOWrapper:
    return path.open("w", encoding="utf-8", newline="\n")


def write_records(
    records: Iterable[PatientRecord], out_dir: Path, *, seed: int, labelled: bool = True
) -> CohortSummary:
    """Stream patient records into a cohort directory; same bytes as `write_cohort`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(RESOURCE_FILES, 0)
    outcomes: list[OutcomeRow] = []
    handles = {name: _open_text(out_dir / f"{name}.ndjson") for name in RESOURCE_FILES}
    try:
        for record in records:
            counts["Patient"] += _write_lines(handles["Patient"], [record.patient])
            counts["Encounter"] += _write_lines(handles["Encounter"], [record.encounter])
            counts["Observation"] += _write_lines(handles["Observation"], record.observations)
            for kind, items in _by_type(record.phoenix).items():
                counts[kind] += _write_lines(handles[kind], items)
            outcomes.append(record.outcome if labelled else record.outcome.without_label())
        counts["Location"] += _write_lines(handles["Location"], [cohort_picu_location()])
    finally:
        for handle in handles.values():
            handle.close()
    summary = CohortSummary(seed, *counts.values(), labelled=labelled)
    _write_tables(out_dir, outcomes, summary)
    return summary


def _by_type(resources: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Resources grouped by type, in the order given."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        grouped.setdefault(resource["resourceType"], []).append(resource)
    return grouped


def _write_tables(out_dir: Path, outcomes: Iterable[OutcomeRow], summary: CohortSummary) -> None:
    (out_dir / "outcomes.csv").write_text(
        outcomes_csv_text(outcomes), encoding="utf-8", newline="\n"
    )
    (out_dir / "data_card.md").write_text(data_card_text(summary), encoding="utf-8", newline="\n")


def outcomes_csv_text(rows: Iterable[OutcomeRow]) -> str:
    """The outcomes CSV (header plus one row per patient) as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUTCOME_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, name) for name in OUTCOME_COLUMNS])
    return buffer.getvalue()


def packaged_data_card() -> str:
    """The cohort data card shipped with the package (model/cohort_data_card.md)."""
    return resources.files(__package__).joinpath(DATA_CARD_RESOURCE).read_text(encoding="utf-8")


def data_card_text(summary: CohortSummary) -> str:
    """The data card written into a cohort directory: the packaged card plus this run's facts."""
    labels = "present" if summary.labelled else "withheld (empty column)"
    run = [
        "",
        "## This cohort",
        "",
        f"- Generator: `model.synth` {GENERATOR_VERSION}",
        f"- Patients: {summary.patients}; seed: {summary.seed}",
        f"- Encounters: {summary.encounters} (each on the PICU Location, typed PEDICU); "
        f"Locations: {summary.locations}; Observations: {summary.observations} (laboratory "
        "results and the Phoenix inputs)",
        f"- Procedures: {summary.procedures}; Devices: {summary.devices}; "
        f"DeviceUseStatements: {summary.device_use_statements}; "
        f"MedicationAdministrations: {summary.medication_administrations}",
        f"- Reference endotype labels: {labels}",
        "- SYNTHETIC — not patient data, not for clinical use.",
        "",
    ]
    return packaged_data_card().rstrip("\n") + "\n" + "\n".join(run)


def write_cohort(cohort: Cohort, out_dir: Path) -> None:
    """Write NDJSON files, outcomes.csv and data_card.md into `out_dir` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_records(_records_of(cohort), out_dir, seed=cohort.seed, labelled=cohort.labelled)


def _records_of(cohort: Cohort) -> Iterable[PatientRecord]:
    """The cohort's patient records again, each with its own resources, in cohort order."""
    by_patient: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for kind, items in (("observations", cohort.observations), ("phoenix", cohort.phoenix)):
        for resource in items:
            owner = _owner(resource)
            by_patient.setdefault(owner, {}).setdefault(kind, []).append(resource)
    for patient, encounter, outcome, latent in zip(
        cohort.patients, cohort.encounters, cohort.outcomes, cohort.latent, strict=True
    ):
        mine = by_patient.get(patient["id"], {})
        yield PatientRecord(
            patient=patient,
            encounter=encounter,
            observations=tuple(mine.get("observations", ())),
            outcome=outcome,
            latent=latent,
            phoenix=tuple(mine.get("phoenix", ())),
        )


def _owner(resource: Mapping[str, Any]) -> str:
    """The id of the patient a resource belongs to (subject, or a Device's patient)."""
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return str(reference).rpartition("/")[2]
