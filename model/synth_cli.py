"""`picu-endotype synth`: write a seeded synthetic PICU cohort (FHIR NDJSON + outcomes CSV)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from model.synth import PatientRecord, iter_patient_records, write_records

PROGRESS_MIN_PATIENTS = 1000  # smaller cohorts are generated too fast to need a bar


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the `synth` options on its sub-command parser."""
    parser.add_argument("--n", type=_positive_int, default=1000, help="patients (default 1000)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--unlabelled",
        action="store_true",
        help="leave reference_endotype empty, as at a site without endotype labels",
    )


def _show_progress(n: int, stream: TextIO) -> bool:
    return n >= PROGRESS_MIN_PATIENTS and stream.isatty()


def run(args: argparse.Namespace) -> int:
    """Generate the cohort, stream it to `args.out` and print where it went with counts."""
    records: Iterable[PatientRecord] = iter_patient_records(args.n, args.seed)
    if _show_progress(args.n, sys.stderr):
        records = tqdm(records, total=args.n, desc="synth", unit="patient", file=sys.stderr)
    summary = write_records(records, args.out, seed=args.seed, labelled=not args.unlabelled)
    print(f"synthetic cohort (SYNTHETIC, not patient data) written to {args.out}")
    counts = {
        "Patient.ndjson": summary.patients,
        "Encounter.ndjson": summary.encounters,
        "Location.ndjson": summary.locations,
        "Observation.ndjson": summary.observations,
        "Procedure.ndjson": summary.procedures,
        "Device.ndjson": summary.devices,
        "DeviceUseStatement.ndjson": summary.device_use_statements,
        "MedicationAdministration.ndjson": summary.medication_administrations,
    }
    for name, count in counts.items():
        print(f"  {name:<31} {count}")
    print(f"  {'outcomes.csv':<31} {summary.patients} rows")
    print("  data_card.md")
    return 0
