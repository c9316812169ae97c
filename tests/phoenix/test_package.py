"""The phoenix-sepsis package's own examples, directly and through the FHIR mapping and course."""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.resources
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import phoenix as phx
import pytest

from fhir_mappings.phoenix_inputs import extract_phoenix
from model.phoenix import phoenix_points

from .conftest import LOINC, NOW, RXNORM, SCT, child, concept, iso, observation, reading

# The package README's printed results for its example data set (phoenix-sepsis 1.1.3).
README = {
    "respiratory": [0, 3, 3, 0, 0, 3, 3, 0, 3, 3, 3, 1, 0, 2, 3, 0, 2, 3, 2, 0],
    "cardiovascular": [2, 2, 1, 0, 0, 1, 4, 0, 3, 0, 3, 0, 0, 2, 3, 2, 2, 2, 2, 1],
    "coagulation": [1, 1, 2, 1, 0, 2, 2, 1, 1, 0, 1, 0, 0, 1, 2, 1, 1, 2, 0, 1],
    "neurologic": [0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    "endocrine": [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    "immunologic": [0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    "renal": [1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0],
    "hepatic": [0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0],
}
AGENTS = {
    "dobutamine": "3616",
    "dopamine": "3628",
    "epinephrine": "3992",
    "milrinone": "52769",
    "norepinephrine": "7512",
    "vasopressin": "11149",
}


def example_rows() -> list[dict[str, Any]]:
    """The package's example data set, numbers as floats (NaN where empty)."""
    path = importlib.resources.files("phoenix").joinpath("data", "sepsis.csv")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: (v if k == "pupil" else float(v) if v != "" else math.nan) for k, v in row.items()}
        for row in rows
    ]


def column(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([row[name] for row in rows])


def test_the_imported_phoenix_module_is_the_sepsis_package() -> None:
    assert importlib.metadata.version("phoenix-sepsis") == "1.1.3"
    assert "phoenix_sepsis" in importlib.metadata.packages_distributions()["phoenix"]
    assert callable(phx.phoenix8) and callable(phx.phoenix_respiratory)
    assert phx.map(np.array([90.0]), np.array([60.0]))[0] == pytest.approx(70.0)


def test_the_package_reproduces_its_readme_examples() -> None:
    rows = example_rows()
    fio2, spo2 = column(rows, "fio2"), column(rows, "spo2")
    vasoactives = sum(column(rows, agent) for agent in AGENTS)
    scores = phx.phoenix8(
        pf_ratio=column(rows, "pao2") / fio2,
        sf_ratio=np.where(spo2 <= 97, spo2 / fio2, np.nan),
        imv=column(rows, "vent"),
        other_respiratory_support=(fio2 > 0.21).astype(int),
        vasoactives=vasoactives,
        lactate=column(rows, "lactate"),
        map=phx.map(column(rows, "sbp"), column(rows, "dbp")),
        platelets=column(rows, "platelets"),
        inr=column(rows, "inr"),
        d_dimer=column(rows, "d_dimer"),
        fibrinogen=column(rows, "fibrinogen"),
        gcs=column(rows, "gcs_total"),
        fixed_pupils=np.array([float(row["pupil"] == "both-fixed") for row in rows]),
        glucose=column(rows, "glucose"),
        anc=column(rows, "anc"),
        alc=column(rows, "alc"),
        creatinine=column(rows, "creatinine"),
        bilirubin=column(rows, "bilirubin"),
        alt=column(rows, "alt"),
        age=column(rows, "age"),
    )
    for organ, expected in README.items():
        assert scores[f"phoenix_{organ}_score"].tolist() == expected, organ


def fhir_resources(row: dict[str, Any], at: datetime) -> list[dict[str, Any]]:
    """One example row as the FHIR resources an EHR would hold, in assorted units."""
    found: list[dict[str, Any]] = []

    def add(code: str, value: float, unit: str | None, **extra: Any) -> None:
        if not math.isnan(value):
            found.append(observation(code, value, unit, at=at, ident=f"o{len(found)}", **extra))

    add("3150-0", row["fio2"] * 100, "%")  # FiO2 in percent
    add("2703-7", row["pao2"] * 0.133322, "kPa")  # PaO2 in kPa
    add("59408-5", row["spo2"], "%")
    add("2518-9", row["lactate"], "mmol/L")
    add("777-3", row["platelets"], "10*9/L")
    add("6301-6", row["inr"], None)
    add("48065-7", row["d_dimer"] * 1000, "ng/mL")  # FEU in ng/mL
    add("3255-7", row["fibrinogen"] / 100, "g/L")
    add("2345-7", row["glucose"] / 18.016, "mmol/L")
    add("751-8", row["anc"] * 1000, "/uL")
    add("731-0", row["alc"], "10*3/uL")
    add("2160-0", row["creatinine"] * 88.4, "umol/L")
    add("1975-2", row["bilirubin"], "mg/dL")
    add("1742-6", row["alt"], "U/L")
    if not math.isnan(row["gcs_total"]):
        found.append(
            {**observation("9269-2", at=at, ident="gcs"), "valueInteger": int(row["gcs_total"])}
        )
    if row["pupil"]:
        answer = "LA25442-7" if row["pupil"] == "both-fixed" else "LA25441-9"
        for side, code in (("right", "79815-7"), ("left", "79899-1")):
            found.append(
                {
                    **observation(code, at=at, ident=f"pupil-{side}"),
                    "valueCodeableConcept": concept(LOINC, answer),
                }
            )
    found.append(
        {
            **observation("85354-9", at=at, ident="bp"),
            "component": [
                {
                    "code": concept(LOINC, "8480-6"),
                    "valueQuantity": {
                        "value": row["sbp"],
                        "unit": "mmHg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                },
                {
                    "code": concept(LOINC, "8462-4"),
                    "valueQuantity": {
                        "value": row["dbp"],
                        "unit": "mmHg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                },
            ],
        }
    )
    if row["vent"] == 1:
        found.append(
            {
                "resourceType": "Procedure",
                "id": "vent",
                "status": "in-progress",
                "subject": {"reference": "Patient/p1"},
                "code": concept(SCT, "1258985005"),
                "performedPeriod": {"start": iso(at - timedelta(hours=2))},
            }
        )
    for agent, code in AGENTS.items():
        if row[agent] == 1:
            found.append(
                {
                    "resourceType": "MedicationAdministration",
                    "id": f"ma-{agent}",
                    "status": "in-progress",
                    "subject": {"reference": "Patient/p1"},
                    "medicationCodeableConcept": concept(RXNORM, code),
                    "effectivePeriod": {"start": iso(at - timedelta(hours=1))},
                    "dosage": {"route": concept(SCT, "47625008")},
                }
            )
    return found


@pytest.mark.parametrize("index", range(20))
def test_readme_examples_through_fhir_mapping_and_the_course(index, catalog) -> None:
    row = example_rows()[index]
    extraction = extract_phoenix(fhir_resources(row, NOW), catalog, patient_id="p1")
    assert extraction.exclusions == ()
    patient = child(row["age"])
    (point,) = phoenix_points(extraction.readings, patient, [NOW], catalog=catalog, phoenix8=True)
    for organ in ("respiratory", "cardiovascular", "coagulation", "neurologic"):
        assert getattr(point, organ) == README[organ][index], organ
    for organ in ("endocrine", "immunologic", "renal", "hepatic"):
        assert point.phoenix8_subscores[organ] == README[organ][index], organ


# The implementation notes' P/F and S/F tables: (time, FiO2 new, PaO2/SpO2 new, ratio or None).
PF_TABLE = [
    ("11:31", 0.30, None, None),
    ("11:45", None, 118, 393.33),
    ("11:47", None, None, 393.33),
    ("11:59", 0.40, None, None),
    ("12:10", None, 152, 380.0),
    ("12:15", None, None, 380.0),
    ("17:45", None, None, 380.0),
    ("18:00", None, None, None),
    ("18:30", None, None, None),
]
SF_TABLE = [
    ("10:15", 0.25, 92, 368.0),
    ("10:20", None, 98, None),
    ("11:31", 0.30, None, None),
    ("11:45", None, 87, 290.0),
    ("11:47", None, None, 290.0),
    ("11:59", 0.40, None, None),
    ("12:10", None, 85, 212.5),
    ("12:15", None, None, 212.5),
    ("17:45", None, None, 212.5),
    ("18:00", None, None, None),
    ("18:30", None, None, None),
]


def at_clock(text: str) -> datetime:
    hour, minute = (int(part) for part in text.split(":"))
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("table", "gas", "ratio"), [(PF_TABLE, "pao2", "pf_ratio"), (SF_TABLE, "spo2", "sf_ratio")]
)
def test_the_implementation_notes_ratio_tables(table, gas, ratio, toddler, catalog) -> None:
    readings = []
    for clock, fio2, value, _ in table:
        if fio2 is not None:
            readings.append(reading("fio2", fio2, at=at_clock(clock)))
        if value is not None:
            readings.append(reading(gas, float(value), at=at_clock(clock)))
    times = [at_clock(clock) for clock, *_ in table]
    points = phoenix_points(readings, toddler, times, catalog=catalog)
    for point, (clock, _, _, expected) in zip(points, table, strict=True):
        got = point.inputs.get(ratio)
        if expected is None:
            assert got is None, clock
        else:
            assert got == pytest.approx(expected, abs=0.01), clock
