"""Phoenix layer cost: CPU milliseconds to map and score a stay, and what it adds to a hook.

Run: `uv run python benchmarks/phoenix_cost.py [--patients 20] [--days 5] [--repeats 5]
[--hook-calls 30] [--no-hooks]`.

Part 1, the pure layer: each synthetic stay has hourly SpO2, FiO2 and a BP panel (SBP, DBP, MAP),
GCS and both pupils every 4 h, a blood gas and lactate every 6 h, coagulation labs daily, one
ventilation Procedure, and an epinephrine infusion charted hourly with a rate. The figures are
process CPU time (not wall time) for `extract_phoenix` (FHIR dicts -> readings) and
`phoenix_course` (hourly grid -> phoenix-sepsis).

Part 2, the whole hook (needs the sandbox FHIR server, installed by `python3 dev.py test`): the
service in-process (Flask test client), the same run, with the Phoenix layer on and off
(`phoenix.enabled`), calls interleaved in batches. Two children in the sandbox: the demo's
hyperinflammatory child (44 h in the PICU, hourly vital signs) and the same child with 5 days of
hourly vital signs and infusion charting before. For each form (complete prefetch from the
discovery templates, with an access token so that a prefetched Bundle with a next page is
followed; direct FHIR queries) it prints CPU ms per hook (median; this process: the service and
its FHIR client threads, not the sandbox), FHIR calls per hook, the prefetch size, and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phoenix_hook_cost import hook_comparison  # noqa: E402

from fhir_mappings.phoenix_inputs import (  # noqa: E402
    PhoenixPatient,
    extract_phoenix,
    load_phoenix_catalog,
)
from fhir_mappings.phoenix_queries import phoenix_queries  # noqa: E402
from model.phoenix import phoenix_course  # noqa: E402

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
END = datetime(2026, 3, 6, 9, 30, tzinfo=UTC)


def _observation(ident: str, code: str, value: float, unit: str, at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _bp_panel(ident: str, sbp: float, dbp: float, at: datetime) -> dict[str, Any]:
    def part(code: str, value: float) -> dict[str, Any]:
        quantity = {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}
        return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity}

    panel = _observation(ident, "85354-9", 0, "mm[Hg]", at)
    del panel["valueQuantity"]
    mean = dbp + (sbp - dbp) / 3
    panel["component"] = [part("8480-6", sbp), part("8462-4", dbp), part("8478-0", mean)]
    return panel


def _pupil(ident: str, code: str, at: datetime) -> dict[str, Any]:
    pupil = _observation(ident, code, 0, "1", at)
    del pupil["valueQuantity"]
    pupil["valueCodeableConcept"] = {"coding": [{"system": LOINC, "code": "LA25441-9"}]}
    return pupil


def stay(days: int, rng: random.Random) -> list[dict[str, Any]]:
    """One child's FHIR resources over `days` days, ending at END."""
    start = END - timedelta(days=days)
    resources: list[dict[str, Any]] = []
    for hour in range(days * 24):
        at = start + timedelta(hours=hour, minutes=rng.randint(0, 50))
        resources.append(_observation(f"spo2-{hour}", "59408-5", rng.randint(85, 99), "%", at))
        resources.append(_observation(f"fio2-{hour}", "3150-0", rng.choice([30, 40, 60]), "%", at))
        resources.append(_bp_panel(f"bp-{hour}", rng.randint(70, 110), rng.randint(35, 60), at))
        resources.append(_epinephrine(f"epi-{hour}", at))
        if hour % 4 == 0:
            resources.append(
                _observation(f"gcs-{hour}", "9269-2", rng.randint(6, 15), "{score}", at)
            )
            resources.append(_pupil(f"pr-{hour}", "79815-7", at))
            resources.append(_pupil(f"pl-{hour}", "79899-1", at))
        if hour % 6 == 0:
            resources.append(
                _observation(f"pao2-{hour}", "2703-7", rng.randint(55, 120), "mm[Hg]", at)
            )
            resources.append(_observation(f"lac-{hour}", "2524-7", rng.uniform(1, 9), "mmol/L", at))
        if hour % 24 == 0:
            for code, value, unit in (
                ("777-3", rng.randint(40, 300), "10*3/uL"),
                ("6301-6", rng.uniform(1.0, 2.0), "{INR}"),
                ("48065-7", rng.uniform(0.3, 6.0), "mg/L"),
                ("3255-7", rng.randint(80, 400), "mg/dL"),
            ):
                resources.append(_observation(f"{code}-{hour}", code, value, unit, at))
    resources.append(
        {
            "resourceType": "Procedure",
            "id": "vent",
            "status": "in-progress",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1258985005"}]},
            "performedPeriod": {"start": start.isoformat()},
        }
    )
    return resources


def _epinephrine(ident: str, at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": ident,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3992"}]
        },
        "effectiveDateTime": at.isoformat(),
        "dosage": {"rateQuantity": {"value": 0.05, "unit": "ug/kg/min"}},
    }


def cpu_ms(call: Callable[[], object], repeats: int) -> list[float]:
    """CPU milliseconds of each of `repeats` calls."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        call()
        samples.append((time.process_time() - started) * 1000)
    return samples


def main() -> int:
    """Print CPU milliseconds per patient for mapping and scoring a stay."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--hook-calls", type=int, default=30, help="hooks per configuration")
    parser.add_argument("--no-hooks", action="store_true", help="part 1 only")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    catalog = load_phoenix_catalog()
    patient = PhoenixPatient(birth_date=date(2022, 6, 1))
    stays = [stay(args.days, rng) for _ in range(args.patients)]
    start = END - timedelta(days=args.days)
    extractions = [extract_phoenix(resources, catalog, patient_id="p1") for resources in stays]

    def mapping() -> None:
        for resources in stays:
            extract_phoenix(resources, catalog, patient_id="p1")

    def scoring() -> None:
        for extraction in extractions:
            phoenix_course(extraction.readings, patient, start=start, end=END, catalog=catalog)

    both = [
        m + s
        for m, s in zip(cpu_ms(mapping, args.repeats), cpu_ms(scoring, args.repeats), strict=True)
    ]
    rows = {
        "mapping": cpu_ms(mapping, args.repeats),
        "scoring": cpu_ms(scoring, args.repeats),
        "mapping + scoring": both,
    }
    points = len(
        phoenix_course(
            extractions[0].readings, patient, start=start, end=END, catalog=catalog
        ).points
    )
    queries = phoenix_queries(catalog, "p1", since=start, page_size=200)
    print(
        f"{args.patients} stays of {args.days} days: {len(stays[0])} resources, "
        f"{len(extractions[0].readings)} readings, {points} hourly points per stay"
    )
    print(f"{'step':<20} {'median ms':>12} {'min ms':>10}   (CPU time per patient)")
    for name, samples in rows.items():
        per_patient = [sample / args.patients for sample in samples]
        print(f"{name:<20} {statistics.median(per_patient):>12.2f} {min(per_patient):>10.2f}")
    print(
        f"FHIR requests added: {len(queries)} searches (one per resource type, run in parallel)"
        "; each follows next pages up to max_pages"
    )
    if not args.no_hooks:
        print()
        hook_comparison(args.hook_calls, stay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
