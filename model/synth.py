"""Seeded synthetic PICU reference cohort and demo scenario patients, as FHIR R4 dicts.

SYNTHETIC data only: not patient data, not for clinical use. Every number that shapes the cohort
is one row of `PARAMETERS`, with its source or the word "assumption". Pure: no I/O except
`write_cohort` and `write_records`; one numpy `Generator` per patient, seeded from (seed, patient
index), so patient `i` is the same whatever `n` is, and the same (n, seed) always gives
byte-identical files.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fhir_mappings.panel import Panel, load_panel

GENERATOR_VERSION = "1.0.0"
DATA_CARD_RESOURCE = "cohort_data_card.md"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)

UCUM = "http://unitsofmeasure.org"
SYNTHETIC_TAGS: tuple[dict[str, str], ...] = (
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "code": "HTEST",
        "display": "test health data",
    },
    {"system": "https://picu-endotype.org/fhir/CodeSystem/data-origin", "code": "synthetic"},
)
PATIENT_IDENTIFIER_SYSTEM = "https://picu-endotype.org/fhir/synthetic-patient"
LAB_CATEGORY_CODING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "laboratory",
    "display": "Laboratory",
}
PICU_SERVICE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": "PEDICU",
            "display": "Pediatric intensive care unit",
        }
    ],
    "text": "Pediatric intensive care unit (PICU)",
}
INPATIENT_CLASS = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "code": "IMP",
    "display": "inpatient encounter",
}

# Latent groups, index order used throughout: Lindell A, B, C.
GROUPS: tuple[str, ...] = ("quiescent", "intermediate", "hyperinflammatory-il6-ifng")
GROUP_KEYS: tuple[str, ...] = ("quiescent", "intermediate", "hyperinflammatory")
ANALYTES: tuple[str, ...] = (
    "il6", "il10", "ferritin", "crp", "procalcitonin",
    "cxcl9", "ifng", "sil2r", "lymphocytes", "platelets", "lactate",
)  # fmt: skip
SEND_OUTS: frozenset[str] = frozenset({"cxcl9", "ifng", "sil2r", "il10"})

PHENOMS = "hyperferritinemic sepsis, PHENOMS, Crit Care 2023 (10.1186/s13054-023-04628-x)"
MALS = "Kyriazopoulou et al., BMC Med 2017 (MALS, adults)"
LINDELL = "Lindell et al., ATS 2024 poster Fig. 1B (github.com/Lindell-Lab/MODS-Subphenotypes)"
INDIA = "PICU severe sepsis at admission, India, n=50, J Intensive Care Med 2021;36:576"
SHANGHAI = "PICU sepsis, Shanghai, Front Immunol 2022 (10.3389/fimmu.2022.1043968), r=0.654"
THAI = "pediatric septic shock, Thailand, n=33, Iran J Pediatr (ijp-145347)"
ARUP = "ARUP serum cytokine panel reference limit (FCYTP)"
CCHMC = "CCHMC Ella CXCL9 reference limit <=647 pg/mL"
WONG = "Wong et al., Crit Care Med 2018;46:e242: 42% A->B, 32% B->A by day 3"
ASSUMPTION = "assumption"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One number that shapes the cohort, with its unit and source (or "assumption")."""

    key: str
    value: float
    unit: str
    source: str


def _p(key: str, value: float, unit: str, source: str) -> Parameter:
    return Parameter(key, value, unit, source)


def _group_rows(prefix: str, values: tuple[float, ...], unit: str, source: str) -> list[Parameter]:
    return [_p(f"{prefix}.{g}", v, unit, source) for g, v in zip(GROUP_KEYS, values, strict=True)]


def _a(why: str) -> str:
    return f"{ASSUMPTION}: {why}"


# fmt: off
PARAMETERS: tuple[Parameter, ...] = (
    *_group_rows("group_share", (0.22, 0.44, 0.34), "fraction", LINDELL + ", 19/39/30 of 88"),
    *_group_rows("sepsis_share", (0.21, 0.41, 0.50), "fraction", LINDELL),
    *_group_rows("picu_mortality", (0.0, 0.08, 0.20), "fraction", LINDELL),
    *_group_rows("mods_day7_if_alive", (0.10, 0.22, 0.40), "fraction",
                 _a("ordered by group as cumulative PELOD-2 26/34/78 in " + LINDELL)),
    *_group_rows("female_share", (0.63, 0.46, 0.83), "fraction", LINDELL),
    _p("sex_other_share", 0.003, "fraction", _a("rare administrative sex 'other'")),
    _p("sex_unknown_share", 0.005, "fraction", _a("rare missing sex")),
    _p("infant_share", 0.30, "fraction", _a("PICU case mix skews to infants")),
    _p("age_min_months", 1, "months", "brief: age 1 month to 17 years"),
    _p("age_max_months", 215, "months", "brief: age 1 month to 17 years"),
    _p("onset_spread_days", 730, "days", _a("onsets spread over two years from `start`")),
    _p("admission_before_onset_max_hours", 48, "h", _a("organ dysfunction starts after admission")),
    _p("ifng_high_share_of_hyperinflammatory", 0.40, "fraction",
       _a("an IFN-gamma-high subgroup at HLH-like ranges")),
    # Marker medians at onset for septic patients, canonical units.
    *_group_rows("median.il6", (6.0, 45.0, 189.0), "pg/mL",
                 _a("C anchored on " + INDIA + " median 189; A at the ARUP limit 5; B between")),
    *_group_rows("median.il10", (8.0, 40.0, 185.0), "pg/mL",
                 _a("C anchored on " + INDIA + " median 185; A under ARUP limit 18")),
    *_group_rows("median.ferritin", (110.0, 280.0, 1400.0), "ng/mL",
                 _a("about 40% > 500 ng/mL overall, a sicker mix than 29% > 500 in " + PHENOMS)),
    *_group_rows("median.crp", (12.0, 35.0, 110.0), "mg/L",
                 _a("C above the 40.8 mg/L CRP/ferritin high-risk cut-off (Carcillo group)")),
    *_group_rows("median.procalcitonin", (0.3, 1.0, 3.0), "ng/mL", _a("no pediatric source used")),
    *_group_rows("median.cxcl9", (220.0, 520.0, 2500.0), "pg/mL",
                 _a("UNSOURCED gap; A and B under " + CCHMC)),
    *_group_rows("median.ifng", (2.0, 4.0, 9.0), "pg/mL",
                 _a("UNSOURCED gap; A and B under " + ARUP + " 5 pg/mL")),
    *_group_rows("median.sil2r", (700.0, 1200.0, 2600.0), "pg/mL",
                 _a("A under " + ARUP + " 1033; higher in " + PHENOMS)),
    *_group_rows("median.lymphocytes", (2.6, 1.8, 0.9), "10*3/uL",
                 _a("around " + THAI + " median 2.16; lymphopenia in C")),
    *_group_rows("median.platelets", (260.0, 200.0, 105.0), "10*3/uL",
                 _a("around " + THAI + " median 205; C: hematologic dysfunction, " + LINDELL)),
    *_group_rows("median.lactate", (1.2, 1.7, 2.6), "mmol/L",
                 _a("A inside reference 0.5-2.2 mmol/L (Phoenix rubric); rising with severity")),
    _p("median.cxcl9.ifng_high", 12000.0, "pg/mL",
       _a("HLH-like; under adult HLH median 23,858 and the 16,100 cut-off (Blood 2025)")),
    _p("median.ifng.ifng_high", 45.0, "pg/mL", _a("HLH-like, no pediatric sepsis source")),
    # Between-patient spread within a group (SD of the natural log).
    _p("sigma.il6", 1.1, "ln", _a("narrower than the pooled " + INDIA + " IQR (ln SD 1.55)")),
    _p("sigma.il10", 1.0, "ln", _a("narrower than the pooled " + INDIA + " IQR (ln SD 1.35)")),
    _p("sigma.ferritin", 0.9, "ln", ASSUMPTION),
    _p("sigma.crp", 0.8, "ln", ASSUMPTION),
    _p("sigma.procalcitonin", 1.2, "ln", ASSUMPTION),
    _p("sigma.cxcl9", 0.8, "ln", ASSUMPTION),
    _p("sigma.ifng", 0.8, "ln", ASSUMPTION),
    _p("sigma.sil2r", 0.6, "ln", ASSUMPTION),
    _p("sigma.lymphocytes", 0.55, "ln", _a("narrower than " + THAI + " IQR (ln SD 0.74)")),
    _p("sigma.platelets", 0.5, "ln", _a("narrower than " + THAI + " IQR (ln SD 1.49)")),
    _p("sigma.lactate", 0.45, "ln", ASSUMPTION),
    _p("sigma.draw_noise", 0.12, "ln", _a("analytical plus biological day-to-day noise")),
    # Non-septic MODS as a scaled-down copy of septic values.
    _p("non_septic_factor.il6", 0.6, "ratio", _a("non-septic MODS scaled down")),
    _p("non_septic_factor.il10", 0.6, "ratio", _a("non-septic MODS scaled down")),
    _p("non_septic_factor.crp", 0.7, "ratio", _a("non-septic MODS scaled down")),
    _p("non_septic_factor.procalcitonin", 0.25, "ratio", _a("PCT tracks bacterial infection")),
    _p("age_factor.lymphocytes.infant", 1.8, "ratio", _a("higher ALC under 1 year")),
    _p("age_factor.lymphocytes.under_5y", 1.3, "ratio", _a("higher ALC under 5 years")),
    # Correlations between a patient's marker deviations (latent normal, log scale).
    _p("corr.il6.il10", 0.30, "r",
       _a("within-group; with the group effect the pooled r is about 0.65, as in " + SHANGHAI)),
    _p("corr.ferritin.crp", 0.50, "r", _a("CRP and ferritin rise together in " + PHENOMS)),
    _p("corr.il6.crp", 0.40, "r", ASSUMPTION),
    _p("corr.cxcl9.ifng", 0.60, "r", _a("CXCL9 is IFN-gamma induced (Buatois, Transl Res 2017)")),
    _p("corr.ferritin.cxcl9", 0.35, "r", _a("CXCL9 higher in " + PHENOMS)),
    _p("corr.cxcl9.sil2r", 0.40, "r", ASSUMPTION),
    _p("corr.il6.lactate", 0.25, "r", ASSUMPTION),
    _p("corr.lymphocytes.platelets", 0.20, "r", ASSUMPTION),
    # Kinetics: group at day 3 given the onset group (rows sum to 1), by course.
    _p("transition.quiescent.intermediate", 0.20, "fraction", _a("about 1/3 switch; " + WONG)),
    _p("transition.intermediate.quiescent", 0.32, "fraction", WONG + ", B->A analogue"),
    _p("transition.intermediate.hyperinflammatory", 0.08, "fraction", _a("worsening")),
    _p("transition.hyperinflammatory.intermediate", 0.42, "fraction",
       WONG + ", A->B analogue (resolving)"),
    _p("transition.complicated.quiescent.intermediate", 0.30, "fraction", _a("worsening course")),
    _p("transition.complicated.quiescent.hyperinflammatory", 0.10, "fraction", _a("worsening")),
    _p("transition.complicated.intermediate.quiescent", 0.10, "fraction", ASSUMPTION),
    _p("transition.complicated.intermediate.hyperinflammatory", 0.35, "fraction", ASSUMPTION),
    _p("transition.complicated.hyperinflammatory.intermediate", 0.12, "fraction",
       _a("persisting hyperinflammation")),
    _p("ferritin_rise.complicated", 1.2, "ratio",
       _a("ferritin keeps rising in a poor course: a fall < 15% by day 3 had > 90% sensitivity "
          "for a poor outcome in " + MALS)),
    _p("day7_step_toward_quiescent", 0.60, "fraction", _a("recovery by day 7 if not complicated")),
    _p("death_day_min", 1.5, "days", ASSUMPTION),
    _p("death_day_max", 14.0, "days", ASSUMPTION),
    _p("stay_days_min", 2.0, "days", ASSUMPTION),
    _p("stay_days_max", 12.0, "days", ASSUMPTION),
    _p("draw_jitter_hours", 3.0, "h", ASSUMPTION),
    _p("pre_onset_draw_share", 0.25, "fraction", _a("admission labs before organ dysfunction")),
    # Missingness.
    _p("never_measured.il6", 0.20, "fraction", _a("IL-6 not available at every site")),
    _p("never_measured.ferritin", 0.10, "fraction", ASSUMPTION),
    _p("never_measured.crp", 0.04, "fraction", ASSUMPTION),
    _p("never_measured.procalcitonin", 0.30, "fraction", ASSUMPTION),
    _p("never_measured.lymphocytes", 0.02, "fraction", ASSUMPTION),
    _p("never_measured.platelets", 0.02, "fraction", ASSUMPTION),
    _p("never_measured.lactate", 0.08, "fraction", ASSUMPTION),
    _p("minimal_workup_share", 0.04, "fraction", _a("no IL-6 and no ferritin at all")),
    *_group_rows("send_out_ordered", (0.15, 0.30, 0.55), "fraction",
                 _a("send-outs ordered when MAS/HLH is suspected")),
    _p("send_out_analyte_present", 0.85, "fraction", ASSUMPTION),
    _p("send_out_day5_share", 0.30, "fraction", ASSUMPTION),
    _p("draw_skipped", 0.10, "fraction", _a("a scheduled draw not done")),
    # Result shapes that the mapping layer must handle.
    _p("share.crp.mg_dl", 0.25, "fraction", _a("US pediatric labs often report mg/dL")),
    _p("share.crp.hs_crp", 0.07, "fraction", _a("hs-CRP 30522-7 alias")),
    _p("share.lactate.mass", 0.12, "fraction", _a("mg/dL under a mass code")),
    _p("share.lactate.blood", 0.25, "fraction", _a("32693-4 whole blood code")),
    _p("share.lactate.arterial", 0.10, "fraction", _a("2518-9 arterial code")),
    _p("share.lymphocytes.per_ul", 0.30, "fraction", _a("ALC in cells/uL")),
    _p("share.lymphocytes.alt_code", 0.30, "fraction", _a("26474-7 instead of 731-0")),
    _p("share.platelets.alt_code", 0.15, "fraction", _a("26515-7 instead of 777-3")),
    _p("share.platelets.si", 0.20, "fraction", _a("10*9/L")),
    _p("share.platelets.text_unit", 0.10, "fraction", _a("'K/uL' unit text without UCUM code")),
    _p("share.ferritin.ug_l", 0.15, "fraction", _a("ug/L")),
    _p("share.ferritin.immunoassay", 0.10, "fraction", _a("20567-4 code")),
    _p("share.il6.ng_l", 0.05, "fraction", _a("ng/L")),
    _p("share.procalcitonin.immunoassay", 0.20, "fraction", _a("75241-0 code")),
    _p("share.sil2r.arbitrary", 0.08, "fraction", _a("U/mL, no fixed conversion")),
    _p("share.ifng.arbitrary", 0.05, "fraction", _a("12729-0 units/volume assay")),
    _p("share.entered_in_error", 0.01, "fraction", _a("mis-keyed result, later voided")),
    _p("share.preliminary", 0.02, "fraction", ASSUMPTION),
    _p("share.amended", 0.01, "fraction", ASSUMPTION),
    _p("share.effective_period", 0.03, "fraction", _a("collection recorded as a period")),
    _p("share.date_only", 0.003, "fraction", _a("imprecise date-only effective time")),
    _p("share.utc_rendering", 0.20, "fraction", _a("some feeds send UTC, others local offset")),
    _p("limit.il6.low", 2.0, "pg/mL", _a("assay limit of quantitation, '<2 pg/mL'")),
    _p("limit.il6.high", 5000.0, "pg/mL", _a("upper limit without dilution, '>5000'")),
    _p("limit.il10.low", 1.0, "pg/mL", ASSUMPTION),
    _p("limit.ifng.low", 1.0, "pg/mL", ASSUMPTION),
    _p("limit.cxcl9.low", 30.0, "pg/mL", ASSUMPTION),
    _p("limit.procalcitonin.low", 0.05, "ng/mL", ASSUMPTION),
    _p("limit.crp.low", 0.5, "mg/L", ASSUMPTION),
    _p("limit.ferritin.high", 40000.0, "ng/mL", ASSUMPTION),
)
# fmt: on
PARAMS: Mapping[str, float] = {row.key: row.value for row in PARAMETERS}

SITE_OFFSETS_MINUTES: tuple[int, ...] = (-300, -240, -360, 0, 60)  # assumption: site time zones
REFERENCE_HIGH: Mapping[str, float] = {
    "il6": 5.0, "il10": 18.0, "ifng": 5.0, "sil2r": 1033.0, "cxcl9": 647.0, "lactate": 2.2,
}  # fmt: skip  # laboratory reference limits (ARUP, CCHMC), canonical units
REFERENCE_LOW: Mapping[str, float] = {"lactate": 0.5}
DECIMALS: Mapping[str, int] = {
    "il6": 1, "il10": 1, "ferritin": 0, "crp": 1, "procalcitonin": 2, "cxcl9": 0,
    "ifng": 1, "sil2r": 0, "lymphocytes": 2, "platelets": 0, "lactate": 1,
}  # fmt: skip

# Nominal draw hours after onset per analyte: days 1-3 dense, days 5 and 7 sparse.
SCHEDULE_HOURS: Mapping[str, tuple[float, ...]] = {
    "lactate": (1, 7, 14, 24, 38, 50, 72),
    "crp": (3, 26, 50, 98, 146),
    "ferritin": (3, 26, 50, 98, 146),
    "platelets": (3, 26, 50, 74, 98, 146),
    "lymphocytes": (3, 26, 50, 74, 98, 146),
    "il6": (3, 26, 50, 98),
    "procalcitonin": (3, 26),
}
SEND_OUT_HOURS: tuple[float, ...] = (6, 54)
SEND_OUT_DAY5_HOUR = 120.0
PRE_ONSET_ANALYTES: tuple[str, ...] = ("crp", "platelets", "lymphocytes", "lactate")


@dataclass(frozen=True, slots=True)
class Representation:
    """How one result is sent: the code, the unit and the factor from the canonical unit."""

    code: str
    unit: str  # valueQuantity.unit as displayed
    ucum: str | None  # valueQuantity.code; None sends the unit text only
    factor: float = 1.0
    decimals: int | None = None  # None: the analyte's default


# analyte -> (share parameter key or None for the default, representation), default last.
REPRESENTATIONS: Mapping[str, tuple[tuple[str | None, Representation], ...]] = {
    "il6": (
        ("share.il6.ng_l", Representation("26881-3", "ng/L", "ng/L")),
        (None, Representation("26881-3", "pg/mL", "pg/mL")),
    ),
    "il10": ((None, Representation("26848-2", "pg/mL", "pg/mL")),),
    "ferritin": (
        ("share.ferritin.ug_l", Representation("2276-4", "ug/L", "ug/L")),
        ("share.ferritin.immunoassay", Representation("20567-4", "ng/mL", "ng/mL")),
        (None, Representation("2276-4", "ng/mL", "ng/mL")),
    ),
    "crp": (
        ("share.crp.mg_dl", Representation("1988-5", "mg/dL", "mg/dL", 0.1, 2)),
        ("share.crp.hs_crp", Representation("30522-7", "mg/L", "mg/L", 1.0, 2)),
        (None, Representation("1988-5", "mg/L", "mg/L")),
    ),
    "procalcitonin": (
        ("share.procalcitonin.immunoassay", Representation("75241-0", "ng/mL", "ng/mL")),
        (None, Representation("33959-8", "ng/mL", "ng/mL")),
    ),
    "cxcl9": ((None, Representation("98115-9", "pg/mL", "pg/mL")),),
    "ifng": (
        ("share.ifng.arbitrary", Representation("12729-0", "IU/mL", "[IU]/mL", 1.0, 1)),
        (None, Representation("27415-9", "pg/mL", "pg/mL")),
    ),
    "sil2r": (
        ("share.sil2r.arbitrary", Representation("76039-7", "U/mL", "[arb'U]/mL", 1.0, 0)),
        (None, Representation("76039-7", "pg/mL", "pg/mL")),
    ),
    "lymphocytes": (
        ("share.lymphocytes.per_ul", Representation("731-0", "cells/uL", "/uL", 1000.0, 0)),
        ("share.lymphocytes.alt_code", Representation("26474-7", "10*3/uL", "10*3/uL")),
        (None, Representation("731-0", "10*3/uL", "10*3/uL")),
    ),
    "platelets": (
        ("share.platelets.si", Representation("777-3", "10*9/L", "10*9/L")),
        ("share.platelets.text_unit", Representation("777-3", "K/uL", None)),
        ("share.platelets.alt_code", Representation("26515-7", "10*3/uL", "10*3/uL")),
        (None, Representation("777-3", "10*3/uL", "10*3/uL")),
    ),
    "lactate": (
        ("share.lactate.mass", Representation("14118-4", "mg/dL", "mg/dL", 9.008, 0)),
        ("share.lactate.blood", Representation("32693-4", "mmol/L", "mmol/L")),
        ("share.lactate.arterial", Representation("2518-9", "mmol/L", "mmol/L")),
        (None, Representation("2524-7", "mmol/L", "mmol/L")),
    ),
}


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One row of outcomes.csv (the cohort contract)."""

    patient_id: str
    onset_time: str  # ISO 8601 with offset
    sex: str
    age_months: int
    sepsis: int
    picu_death: int
    complicated_course: int
    reference_endotype: str


OUTCOME_COLUMNS: tuple[str, ...] = (
    "patient_id", "onset_time", "sex", "age_months", "sepsis",
    "picu_death", "complicated_course", "reference_endotype",
)  # fmt: skip


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
        )

    def without_labels(self) -> Cohort:
        """The same cohort with reference_endotype left empty, as at a site without labels."""
        outcomes = tuple(_replace_outcome(row) for row in self.outcomes)
        return dataclasses.replace(self, outcomes=outcomes, labelled=False)


# ---------------------------------------------------------------------------------------------
# Correlated latent deviations


def correlation_matrix() -> np.ndarray:
    """The marker correlation matrix (ANALYTES order) built from the `corr.*` parameters."""
    size = len(ANALYTES)
    matrix = np.eye(size)
    for row in PARAMETERS:
        if row.key.startswith("corr."):
            _, first, second = row.key.split(".")
            i, j = ANALYTES.index(first), ANALYTES.index(second)
            matrix[i, j] = matrix[j, i] = row.value
    return matrix


_CHOLESKY = np.linalg.cholesky(correlation_matrix())


# ---------------------------------------------------------------------------------------------
# Small helpers


def _share(rng: np.random.Generator, key: str) -> bool:
    return bool(rng.random() < PARAMS[key])


def _group_param(prefix: str, group: int) -> float:
    return PARAMS[f"{prefix}.{GROUP_KEYS[group]}"]


@functools.lru_cache(maxsize=64)
def _zone(offset_minutes: int) -> timezone:
    return timezone(timedelta(minutes=offset_minutes))


def _format_time(moment: datetime, offset_minutes: int, *, as_utc: bool = False) -> str:
    if as_utc:
        return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return moment.astimezone(_zone(offset_minutes)).isoformat(timespec="seconds")


def _meta() -> dict[str, Any]:
    return {"tag": [dict(tag) for tag in SYNTHETIC_TAGS]}


def _rounded(value: float, decimals: int) -> float | int:
    if decimals <= 0:
        return int(round(value))
    return round(value, decimals)


def _months_between(born: date, on: date) -> int:
    months = (on.year - born.year) * 12 + (on.month - born.month)
    return months - (1 if on.day < born.day else 0)


def _years_before(moment: date, years: int) -> date:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


# ---------------------------------------------------------------------------------------------
# FHIR resources


def _patient_resource(
    patient_id: str, label: str, sex: str, birth: date, deceased: str | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": _meta(),
        "identifier": [{"system": PATIENT_IDENTIFIER_SYSTEM, "value": f"SYNTHETIC-{patient_id}"}],
        "name": [
            {
                "use": "anonymous",
                "text": f"SYNTHETIC TEST PATIENT {label}",
                "family": "SYNTHETIC",
                "given": ["Test", label],
            }
        ],
        "gender": sex,
        "birthDate": birth.isoformat(),
    }
    if deceased is not None:
        resource["deceasedDateTime"] = deceased
    return resource


def _encounter_resource(
    encounter_id: str, patient_id: str, period: dict[str, str], *, status: str, died: bool
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": _meta(),
        "status": status,
        "class": dict(INPATIENT_CLASS),
        "serviceType": copy.deepcopy(PICU_SERVICE),
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
        "location": [{"location": {"display": "Pediatric intensive care unit (PICU)"}}],
    }
    if died:
        disposition = {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition"}
        disposition |= {"code": "exp", "display": "Expired"}
        resource["hospitalization"] = {"dischargeDisposition": {"coding": [disposition]}}
    return resource


def _coding(panel: Panel, analyte: str, code: str) -> dict[str, str]:
    for coding in panel.codes_for(analyte):
        if coding.code == code:
            return coding.as_fhir()
    raise KeyError(f"{analyte}: code {code} is not in the panel")


def _quantity(value: float, rep: Representation, decimals: int, analyte: str) -> dict[str, Any]:
    """valueQuantity with a comparator when the canonical value is outside the assay limits."""
    quantity: dict[str, Any] = {}
    low, high = PARAMS.get(f"limit.{analyte}.low"), PARAMS.get(f"limit.{analyte}.high")
    if low is not None and value < low:
        value, quantity["comparator"] = low, "<"
    elif high is not None and value > high:
        value, quantity["comparator"] = high, ">"
    quantity["value"] = _rounded(value * rep.factor, decimals)
    quantity["unit"] = rep.unit
    if rep.ucum is not None:
        quantity |= {"system": UCUM, "code": rep.ucum}
    return quantity


def _reference_range(analyte: str, rep: Representation) -> list[dict[str, Any]] | None:
    if analyte not in REFERENCE_HIGH or rep.ucum is None or rep.factor != 1.0:
        return None
    if rep.ucum in {"[IU]/mL", "[arb'U]/mL"}:
        return None
    bound = {"unit": rep.unit, "system": UCUM, "code": rep.ucum}
    reference: dict[str, Any] = {"high": {"value": REFERENCE_HIGH[analyte], **bound}}
    if analyte in REFERENCE_LOW:
        reference = {"low": {"value": REFERENCE_LOW[analyte], **bound}, **reference}
    return [reference]


@dataclass(frozen=True, slots=True)
class _Result:
    """One result to render: what, when, how and with which status."""

    observation_id: str
    analyte: str
    value: float  # canonical unit
    time: datetime
    rep: Representation
    status: str = "final"
    effective: str | None = None  # preformatted effective[x] value
    period_minutes: int | None = None  # effectivePeriod instead of effectiveDateTime
    issued_after: timedelta = timedelta(hours=2)
    as_utc: bool = False  # render times in UTC ("Z") instead of the site offset


def _observation_resource(
    panel: Panel,
    result: _Result,
    patient_id: str,
    encounter_id: str | None,
    offset_minutes: int,
) -> dict[str, Any]:
    """One laboratory Observation dict (FHIR R4) for a synthetic result."""
    analyte, rep = result.analyte, result.rep
    decimals = rep.decimals if rep.decimals is not None else DECIMALS[analyte]
    coding = _coding(panel, analyte, rep.code)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": result.observation_id,
        "meta": _meta(),
        "status": result.status,
        "category": [{"coding": [dict(LAB_CATEGORY_CODING)]}],
        "code": {"coding": [coding], "text": panel.analytes[analyte].display},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if encounter_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    resource |= _effective(result, offset_minutes)
    issued = result.time + result.issued_after
    resource["issued"] = _format_time(issued, offset_minutes, as_utc=result.as_utc)
    resource["valueQuantity"] = _quantity(result.value, rep, decimals, analyte)
    reference = _reference_range(analyte, rep)
    if reference is not None:
        resource["referenceRange"] = reference
    return resource


def _effective(result: _Result, offset_minutes: int) -> dict[str, Any]:
    if result.effective is not None:
        return {"effectiveDateTime": result.effective}
    start = _format_time(result.time, offset_minutes, as_utc=result.as_utc)
    if result.period_minutes is None:
        return {"effectiveDateTime": start}
    end_time = result.time + timedelta(minutes=result.period_minutes)
    return {"effectivePeriod": {"start": start, "end": _format_time(end_time, offset_minutes)}}


# ---------------------------------------------------------------------------------------------
# One synthetic cohort patient


@dataclass(frozen=True, slots=True)
class _Course:
    """A patient's latent clinical course."""

    groups: tuple[int, int, int]  # onset, day 3, day 7
    sepsis: bool
    died: bool
    complicated: bool
    ifng_high: bool
    end_hours: float  # death or PICU discharge, hours after onset


def _transition(rng: np.random.Generator, group: int, complicated: bool) -> int:
    prefix = "transition.complicated." if complicated else "transition."
    probabilities = np.zeros(3)
    for target in range(3):
        if target != group:
            key = f"{prefix}{GROUP_KEYS[group]}.{GROUP_KEYS[target]}"
            probabilities[target] = PARAMS.get(key, 0.0)
    probabilities[group] = 1.0 - probabilities.sum()
    return int(rng.choice(3, p=probabilities))


def _day7_group(rng: np.random.Generator, day3: int, complicated: bool) -> int:
    if complicated or day3 == 0 or not _share(rng, "day7_step_toward_quiescent"):
        return day3
    return day3 - 1


def _course(rng: np.random.Generator) -> _Course:
    shares = [_group_param("group_share", g) for g in range(3)]
    onset = int(rng.choice(3, p=np.array(shares) / sum(shares)))
    sepsis = bool(rng.random() < _group_param("sepsis_share", onset))
    died = bool(rng.random() < _group_param("picu_mortality", onset))
    complicated = died or bool(rng.random() < _group_param("mods_day7_if_alive", onset))
    day3 = _transition(rng, onset, complicated)
    day7 = _day7_group(rng, day3, complicated)
    ifng_high = onset == 2 and _share(rng, "ifng_high_share_of_hyperinflammatory")
    if died:
        end_days = rng.uniform(PARAMS["death_day_min"], PARAMS["death_day_max"])
    else:
        low = 7.0 if complicated else PARAMS["stay_days_min"]
        end_days = rng.uniform(low, max(low + 1.0, PARAMS["stay_days_max"]))
    return _Course((onset, day3, day7), sepsis, died, complicated, ifng_high, end_days * 24.0)


def _sex(rng: np.random.Generator, group: int) -> str:
    draw = rng.random()
    if draw < PARAMS["sex_unknown_share"]:
        return "unknown"
    if draw < PARAMS["sex_unknown_share"] + PARAMS["sex_other_share"]:
        return "other"
    return "female" if rng.random() < _group_param("female_share", group) else "male"


def _birth_date(rng: np.random.Generator, onset_day: date) -> date:
    low, high = int(PARAMS["age_min_months"]), int(PARAMS["age_max_months"])
    if _share(rng, "infant_share"):
        months = int(rng.integers(low, 12))
    else:
        months = int(rng.integers(12, high + 1))
    days_into_month = int(rng.integers(0, 28))
    born = onset_day - timedelta(days=round(months * 30.4375) + days_into_month)
    while _months_between(born, onset_day) > high:
        born += timedelta(days=1)
    while _months_between(born, onset_day) < low:
        born -= timedelta(days=1)
    return born


def _group_log_median(analyte: str, group: int, ifng_high: bool) -> float:
    if ifng_high and group == 2 and analyte in {"cxcl9", "ifng"}:
        return math.log(PARAMS[f"median.{analyte}.ifng_high"])
    return math.log(_group_param(f"median.{analyte}", group))


_DAY3_HOURS, _DAY7_HOURS = 72.0, 168.0


def _group_levels(analyte: str, course: _Course) -> tuple[float, float, float]:
    """The log group medians of one analyte at day 0, 3 and 7 of a patient's course."""
    day0, day3, day7 = (_group_log_median(analyte, g, course.ifng_high) for g in course.groups)
    if analyte == "ferritin" and course.complicated:
        rise = math.log(PARAMS["ferritin_rise.complicated"])
        return day0, day3 + rise, day7 + rise
    return day0, day3, day7


def _log_level(levels: tuple[float, float, float], hours: float) -> float:
    """The group-level log median at a time, interpolated between day 0, 3 and 7."""
    if hours >= _DAY7_HOURS:
        return levels[2]
    if hours >= _DAY3_HOURS:
        fraction = (hours - _DAY3_HOURS) / (_DAY7_HOURS - _DAY3_HOURS)
        return levels[1] + fraction * (levels[2] - levels[1])
    return levels[0] + max(hours, 0.0) / _DAY3_HOURS * (levels[1] - levels[0])


def _patient_shift(analyte: str, course: _Course, age_months: int) -> float:
    shift = 0.0
    if not course.sepsis:
        shift += math.log(PARAMS.get(f"non_septic_factor.{analyte}", 1.0))
    if analyte == "lymphocytes" and age_months < 12:
        shift += math.log(PARAMS["age_factor.lymphocytes.infant"])
    elif analyte == "lymphocytes" and age_months < 60:
        shift += math.log(PARAMS["age_factor.lymphocytes.under_5y"])
    return shift


def _measured_analytes(rng: np.random.Generator, group: int) -> list[str]:
    minimal = _share(rng, "minimal_workup_share")
    measured = []
    for analyte in SCHEDULE_HOURS:
        if minimal and analyte in {"il6", "ferritin"}:
            continue
        if not _share(rng, f"never_measured.{analyte}"):
            measured.append(analyte)
    if rng.random() < _group_param("send_out_ordered", group):
        measured += [a for a in sorted(SEND_OUTS) if _share(rng, "send_out_analyte_present")]
    return measured


def _draw_hours(rng: np.random.Generator, analyte: str, end_hours: float) -> list[float]:
    if analyte in SEND_OUTS:
        nominal = list(SEND_OUT_HOURS)
        if _share(rng, "send_out_day5_share"):
            nominal.append(SEND_OUT_DAY5_HOUR)
    else:
        nominal = list(SCHEDULE_HOURS[analyte])
    jitter = PARAMS["draw_jitter_hours"]
    hours = []
    for index, hour in enumerate(nominal):
        if index > 0 and _share(rng, "draw_skipped"):
            continue
        drawn = max(0.25, hour + rng.uniform(-jitter, jitter))
        if drawn < end_hours:
            hours.append(drawn)
    return hours


def _representation(rng: np.random.Generator, analyte: str) -> Representation:
    draw, cumulative = rng.random(), 0.0
    for share_key, rep in REPRESENTATIONS[analyte]:
        if share_key is None:
            return rep
        cumulative += PARAMS[share_key]
        if draw < cumulative:
            return rep
    raise AssertionError(f"{analyte}: REPRESENTATIONS has no default")


@dataclass(frozen=True, slots=True)
class _Context:
    """Per-patient constants needed to render results."""

    patient_id: str
    encounter_id: str
    onset: datetime
    offset_minutes: int
    admission_lead_hours: float = 24.0  # PICU admission, hours before onset


def _status(rng: np.random.Generator) -> str:
    draw = rng.random()
    if draw < PARAMS["share.preliminary"]:
        return "preliminary"
    if draw < PARAMS["share.preliminary"] + PARAMS["share.amended"]:
        return "amended"
    return "final"


def _result_shape(rng: np.random.Generator, time: datetime, offset_minutes: int) -> dict[str, Any]:
    """Status, timing form and time rendering of one result."""
    timing = rng.random()
    shape: dict[str, Any] = {"status": _status(rng), "as_utc": _share(rng, "share.utc_rendering")}
    if timing < PARAMS["share.effective_period"]:
        shape["period_minutes"] = int(rng.integers(10, 60))
    elif timing < PARAMS["share.effective_period"] + PARAMS["share.date_only"]:
        shape["effective"] = time.astimezone(_zone(offset_minutes)).date().isoformat()
    return shape


def _render(
    rng: np.random.Generator, panel: Panel, ctx: _Context, result: _Result
) -> list[dict[str, Any]]:
    """The Observation for one result, plus a voided mis-keyed twin now and then."""
    rendered = [
        _observation_resource(panel, result, ctx.patient_id, ctx.encounter_id, ctx.offset_minutes)
    ]
    if _share(rng, "share.entered_in_error"):
        voided = dataclasses.replace(
            result,
            observation_id=result.observation_id + "-eie",
            value=result.value * 10.0,
            status="entered-in-error",
        )
        rendered.append(
            _observation_resource(
                panel, voided, ctx.patient_id, ctx.encounter_id, ctx.offset_minutes
            )
        )
    return rendered


def _turnaround(rng: np.random.Generator, analyte: str) -> timedelta:
    if analyte in SEND_OUTS:
        return timedelta(hours=float(rng.uniform(48, 240)))
    return timedelta(minutes=float(rng.uniform(30, 240)))


def _analyte_results(
    rng: np.random.Generator, ctx: _Context, course: _Course, analyte: str, base: float
) -> list[_Result]:
    rep = _representation(rng, analyte)
    hours = _draw_hours(rng, analyte, course.end_hours)
    if analyte in PRE_ONSET_ANALYTES and _share(rng, "pre_onset_draw_share"):
        hours.insert(0, -float(rng.uniform(0.5, ctx.admission_lead_hours)))
    noise = PARAMS["sigma.draw_noise"]
    levels = _group_levels(analyte, course)
    results = []
    for number, hour in enumerate(hours, start=1):
        log_value = _log_level(levels, hour) + base
        value = math.exp(log_value + noise * rng.standard_normal())
        time = ctx.onset + timedelta(hours=hour)
        results.append(
            _Result(
                observation_id=f"{ctx.patient_id}-{analyte}-{number}",
                analyte=analyte,
                value=value,
                time=time,
                rep=rep,
                issued_after=_turnaround(rng, analyte),
                **_result_shape(rng, time, ctx.offset_minutes),
            )
        )
    return results


def _observations(
    rng: np.random.Generator, panel: Panel, ctx: _Context, course: _Course, age_months: int
) -> list[dict[str, Any]]:
    deviations = _CHOLESKY @ rng.standard_normal(len(ANALYTES))
    observations: list[dict[str, Any]] = []
    for analyte in _measured_analytes(rng, course.groups[0]):
        index = ANALYTES.index(analyte)
        base = PARAMS[f"sigma.{analyte}"] * deviations[index]
        base += _patient_shift(analyte, course, age_months)
        for result in _analyte_results(rng, ctx, course, analyte, base):
            observations += _render(rng, panel, ctx, result)
    return observations


def patient_id_for(seed: int, index: int) -> str:
    """The FHIR id of cohort patient `index` generated with `seed`."""
    return f"syn{seed}-{index:06d}"


def _onset(rng: np.random.Generator, start: datetime) -> datetime:
    minutes = int(rng.integers(0, int(PARAMS["onset_spread_days"]) * 24 * 60))
    return start + timedelta(minutes=minutes)


@dataclass(frozen=True, slots=True)
class _Person:
    """Demographics and timing of one cohort patient."""

    sex: str
    birth: date
    age_months: int
    onset: datetime
    offset_minutes: int
    admission_lead_hours: float


def _person(rng: np.random.Generator, start: datetime, group: int) -> _Person:
    offset = int(rng.choice(SITE_OFFSETS_MINUTES))
    onset = _onset(rng, start)
    sex = _sex(rng, group)
    local_day = onset.astimezone(timezone(timedelta(minutes=offset))).date()
    birth = _birth_date(rng, local_day)
    lead = float(rng.uniform(1, PARAMS["admission_before_onset_max_hours"]))
    return _Person(sex, birth, _months_between(birth, local_day), onset, offset, lead)


def _outcome(patient_id: str, person: _Person, course: _Course) -> OutcomeRow:
    return OutcomeRow(
        patient_id=patient_id,
        onset_time=_format_time(person.onset, person.offset_minutes),
        sex=person.sex,
        age_months=person.age_months,
        sepsis=int(course.sepsis),
        picu_death=int(course.died),
        complicated_course=int(course.complicated),
        reference_endotype=GROUPS[course.groups[0]],
    )


def _cohort_encounter(ctx: _Context, course: _Course) -> tuple[dict[str, Any], datetime]:
    lead = timedelta(hours=ctx.admission_lead_hours)
    ended = ctx.onset + timedelta(hours=course.end_hours)
    period = {
        "start": _format_time(ctx.onset - lead, ctx.offset_minutes),
        "end": _format_time(ended, ctx.offset_minutes),
    }
    encounter = _encounter_resource(
        ctx.encounter_id, ctx.patient_id, period, status="finished", died=course.died
    )
    return encounter, ended


def simulate_patient(seed: int, index: int, start: datetime, panel: Panel) -> PatientRecord:
    """Generate one cohort patient; the same (seed, index, start) always gives the same record."""
    rng = np.random.default_rng([seed, index])
    patient_id = patient_id_for(seed, index)
    course = _course(rng)
    person = _person(rng, start, course.groups[0])
    ctx = _Context(
        patient_id,
        f"{patient_id}-enc",
        person.onset,
        person.offset_minutes,
        person.admission_lead_hours,
    )
    encounter, ended = _cohort_encounter(ctx, course)
    observations = _observations(rng, panel, ctx, course, person.age_months)
    deceased = _format_time(ended, person.offset_minutes) if course.died else None
    label = f"{index:06d}"
    return PatientRecord(
        patient=_patient_resource(patient_id, label, person.sex, person.birth, deceased),
        encounter=encounter,
        observations=tuple(observations),
        outcome=_outcome(patient_id, person, course),
        latent=LatentState(patient_id, *(GROUPS[g] for g in course.groups), course.ifng_high),
    )


def iter_patient_records(
    n: int, seed: int, *, start: datetime | None = None
) -> Iterator[PatientRecord]:
    """Generate cohort patients one at a time (for progress bars and bounded memory)."""
    if n < 0 or seed < 0:
        raise ValueError("n and seed must be non-negative")
    start = start or DEFAULT_START
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    panel = load_panel()
    for index in range(n):
        yield simulate_patient(seed, index, start, panel)


def generate_cohort(
    n: int, seed: int, *, start: datetime | None = None, labelled: bool = True
) -> Cohort:
    """A seeded synthetic cohort of `n` patients; `labelled=False` empties reference_endotype."""
    cohort = Cohort.from_records(n, seed, iter_patient_records(n, seed, start=start))
    return cohort if labelled else cohort.without_labels()


def _replace_outcome(row: OutcomeRow) -> OutcomeRow:
    return dataclasses.replace(row, reference_endotype="")


# ---------------------------------------------------------------------------------------------
# Files


def _ndjson_line(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n"


RESOURCE_FILES: tuple[str, ...] = ("Patient", "Encounter", "Observation")


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What was written: counts per file, the seed and whether labels were kept."""

    seed: int
    patients: int
    encounters: int
    observations: int
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
            outcomes.append(record.outcome if labelled else _replace_outcome(record.outcome))
    finally:
        for handle in handles.values():
            handle.close()
    summary = CohortSummary(seed, *counts.values(), labelled=labelled)
    _write_tables(out_dir, outcomes, summary)
    return summary


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


def render_parameter_table() -> str:
    """The markdown table of every generator parameter with its source."""
    lines = ["| Parameter | Value | Unit | Source |", "|---|---|---|---|"]
    for row in PARAMETERS:
        source = row.source.replace("|", "/")
        lines.append(f"| `{row.key}` | {row.value:g} | {row.unit} | {source} |")
    return "\n".join(lines) + "\n"


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
        f"- Encounters: {summary.encounters}; Observations: {summary.observations}",
        f"- Reference endotype labels: {labels}",
        "- SYNTHETIC — not patient data, not for clinical use.",
        "",
    ]
    return packaged_data_card().rstrip("\n") + "\n" + "\n".join(run)


def write_cohort(cohort: Cohort, out_dir: Path) -> None:
    """Write NDJSON files, outcomes.csv and data_card.md into `out_dir` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, items in zip(
        RESOURCE_FILES, (cohort.patients, cohort.encounters, cohort.observations), strict=True
    ):
        with _open_text(out_dir / f"{name}.ndjson") as handle:
            _write_lines(handle, items)
    summary = CohortSummary(
        cohort.seed,
        len(cohort.patients),
        len(cohort.encounters),
        len(cohort.observations),
        cohort.labelled,
    )
    _write_tables(out_dir, cohort.outcomes, summary)


# ---------------------------------------------------------------------------------------------
# Demo scenario patients

# kind -> (age in years, sex, hours before `now` of each draw, {analyte: values per draw}).
# Values are canonical units; None skips that draw. All SYNTHETIC.
ScenarioSpec = tuple[int, str, tuple[float, ...], Mapping[str, tuple[float | None, ...]]]
SCENARIOS: Mapping[str, ScenarioSpec] = {
    "hyperinflammatory": (6, "female", (30.0, 6.0), {
        "il6": (380.0, 520.0), "ferritin": (2600.0, 4800.0), "crp": (95.0, 160.0),
        "cxcl9": (8200.0, 14500.0), "ifng": (35.0, 60.0), "il10": (140.0, 210.0),
        "sil2r": (3800.0, 5200.0), "lymphocytes": (0.8, 0.6), "platelets": (120.0, 85.0),
        "lactate": (3.2, 3.6), "procalcitonin": (2.5, 4.1),
    }),
    "quiescent": (9, "male", (28.0, 5.0), {
        "il6": (3.1, 2.4), "ferritin": (85.0, 78.0), "crp": (3.2, 2.1),
        "cxcl9": (210.0, 180.0), "ifng": (2.1, 1.8), "il10": (4.0, 3.2),
        "sil2r": (620.0, 580.0), "lymphocytes": (2.8, 3.1), "platelets": (290.0, 310.0),
        "lactate": (1.1, 0.9), "procalcitonin": (0.08, 0.06),
    }),
    "missing-panel": (4, "male", (20.0, 4.0), {
        "crp": (42.0, 38.0), "platelets": (210.0, 198.0),
    }),
    "resolving": (11, "female", (72.0, 50.0, 26.0, 4.0), {
        "il6": (640.0, 120.0, 4.2, 2.6), "ferritin": (5200.0, 1500.0, 240.0, 150.0),
        "crp": (210.0, 90.0, 8.0, 4.0), "cxcl9": (9800.0, 2100.0, 520.0, 300.0),
        "ifng": (48.0, 12.0, 4.0, 2.5), "il10": (160.0, 40.0, 12.0, 5.0),
        "sil2r": (4200.0, 1900.0, 980.0, 700.0), "lymphocytes": (0.5, 1.0, 1.9, 2.4),
        "platelets": (70.0, 115.0, 190.0, 240.0), "lactate": (4.1, 2.3, 1.4, 1.0),
    }),
}  # fmt: skip
SCENARIO_KINDS: tuple[str, ...] = tuple(SCENARIOS)
_SCENARIO_ENCOUNTER_HOURS = 120.0


def _primary_representation(panel: Panel, analyte: str) -> Representation:
    coding = panel.analytes[analyte].primary
    unit = panel.analytes[analyte].unit
    return Representation(coding.code, unit, unit)


def _offset_minutes(now: datetime) -> int:
    offset = now.utcoffset()
    if offset is None:
        raise ValueError("now must be timezone-aware")
    return int(offset.total_seconds() // 60)


def scenario_patient(kind: str, patient_id: str, *, now: datetime) -> list[dict[str, Any]]:
    """Patient, in-progress PICU Encounter and Observations for one demo scenario (SYNTHETIC)."""
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; choose one of {', '.join(SCENARIO_KINDS)}")
    offset = _offset_minutes(now)
    age_years, sex, hours_before, values = SCENARIOS[kind]
    panel = load_panel()
    encounter_id = f"{patient_id}-enc"
    birth = _years_before(now.date(), age_years) - timedelta(days=40)
    patient = _patient_resource(patient_id, f"{kind} scenario", sex, birth, None)
    period = {"start": _format_time(now - timedelta(hours=_SCENARIO_ENCOUNTER_HOURS), offset)}
    encounter = _encounter_resource(
        encounter_id, patient_id, period, status="in-progress", died=False
    )
    observations = [
        _observation_resource(panel, result, patient_id, encounter_id, offset)
        for result in _scenario_results(panel, patient_id, now, hours_before, values)
    ]
    return [patient, encounter, *observations]


def _scenario_results(
    panel: Panel,
    patient_id: str,
    now: datetime,
    hours_before: tuple[float, ...],
    values: Mapping[str, tuple[float | None, ...]],
) -> list[_Result]:
    results = []
    for analyte, series in values.items():
        rep = _primary_representation(panel, analyte)
        for number, (hours, value) in enumerate(zip(hours_before, series, strict=True), start=1):
            if value is None:
                continue
            results.append(
                _Result(
                    observation_id=f"{patient_id}-{analyte}-{number}",
                    analyte=analyte,
                    value=value,
                    time=now - timedelta(hours=hours),
                    rep=rep,
                    issued_after=timedelta(hours=min(1.0, hours / 2)),
                )
            )
    return results
