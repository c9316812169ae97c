"""Seeded synthetic PICU reference cohort and demo scenario patients, as FHIR R4 dicts.

SYNTHETIC data only: not patient data, not for clinical use. Every number that shapes the cohort
is one entry of `parameters.toml`, with its source or the word "assumption". The package is split
along its concerns: `parameters` (the data file, checked against the panel), `simulate` (one
patient's latent course and results), `render` (FHIR resources), `write` (files, the only I/O)
and `scenarios` (the demo patients). One numpy `Generator` per patient, seeded from (seed,
patient index), so patient `i` is the same whatever `n` is, and the same (n, seed) always gives
byte-identical files.
"""

from __future__ import annotations

from model.synth.parameters import (
    ANALYTES,
    GROUPS,
    PARAMETERS,
    PARAMS,
    Parameter,
    correlation_matrix,
    render_parameter_table,
)
from model.synth.records import OUTCOME_COLUMNS, Cohort, LatentState, OutcomeRow, PatientRecord
from model.synth.render import SYNTHETIC_TAGS
from model.synth.scenarios import SCENARIO_KINDS, scenario_onset, scenario_patient
from model.synth.simulate import (
    DEFAULT_START,
    generate_cohort,
    iter_patient_records,
    patient_id_for,
    simulate_patient,
)
from model.synth.write import (
    GENERATOR_VERSION,
    CohortSummary,
    data_card_text,
    outcomes_csv_text,
    packaged_data_card,
    write_cohort,
    write_records,
)

__all__ = [
    "ANALYTES",
    "DEFAULT_START",
    "GENERATOR_VERSION",
    "GROUPS",
    "OUTCOME_COLUMNS",
    "PARAMETERS",
    "PARAMS",
    "SCENARIO_KINDS",
    "SYNTHETIC_TAGS",
    "Cohort",
    "CohortSummary",
    "LatentState",
    "OutcomeRow",
    "Parameter",
    "PatientRecord",
    "correlation_matrix",
    "data_card_text",
    "generate_cohort",
    "iter_patient_records",
    "outcomes_csv_text",
    "packaged_data_card",
    "patient_id_for",
    "render_parameter_table",
    "scenario_onset",
    "scenario_patient",
    "simulate_patient",
    "write_cohort",
    "write_records",
]
