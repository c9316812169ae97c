"""Scoring cost per hook: microseconds per assessment, rules v2, rules v1 and the model.

Run: `uv run python benchmarks/scoring_cost.py [--patients 200] [--repeats 5]`.
Timelines come from a seeded synthetic cohort through the service's own mapping path, anchored at
the onset and assessed 72 h after it (so the look-back, early and later phases all hold results);
the mapping and timeline step is timed too, as the part of the request that scoring sits next to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_mappings.observations import extract  # noqa: E402
from fhir_mappings.panel import load_panel  # noqa: E402
from model.assessment import Timeline  # noqa: E402
from model.cohort import onset_frame  # noqa: E402
from model.rules import load_rule_scorer  # noqa: E402
from model.rules_scorer import load_rules_v2_scorer  # noqa: E402
from model.scorer import load_model_scorer  # noqa: E402
from model.synth import generate_cohort  # noqa: E402
from model.timeline import build_timeline  # noqa: E402

WINDOW = timedelta(hours=48)
ASSESSED_AFTER_ONSET = timedelta(hours=72)


def per_call_microseconds(call: Callable[[], object], items: int, repeats: int) -> list[float]:
    """Microseconds per item for each of `repeats` passes over `items` items."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000 / items)
    return samples


def cohort_inputs(patients: int, seed: int) -> list[tuple[str, list[dict], datetime]]:
    """(patient id, observations, onset) for each synthetic patient."""
    cohort = generate_cohort(patients, seed)
    by_patient: dict[str, list[dict]] = {}
    for observation in cohort.observations:
        patient = observation["subject"]["reference"].split("/")[-1]
        by_patient.setdefault(patient, []).append(observation)
    rows = []
    for row in cohort.outcomes:
        onset = datetime.fromisoformat(row.onset_time)
        rows.append((row.patient_id, by_patient.get(row.patient_id, []), onset))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print microseconds per assessment for the mapping path, both rule sets and the model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    panel = load_panel()
    inputs = cohort_inputs(args.patients, args.seed)

    def timelines() -> list[Timeline]:
        return [
            build_timeline(
                extract(obs, panel, patient_id=pid),
                onset_frame(onset, WINDOW, onset + ASSESSED_AFTER_ONSET),
            )
            for pid, obs, onset in inputs
        ]

    built = timelines()
    scorers = {
        "rules v2 assess": load_rules_v2_scorer(),
        "rules v1 assess": load_rule_scorer(),
        "model assess": load_model_scorer(),
    }
    results = {"mapping + timeline": per_call_microseconds(timelines, len(inputs), args.repeats)}
    for name, scorer in scorers.items():
        results[name] = per_call_microseconds(
            lambda scorer=scorer: [scorer.assess(t) for t in built], len(built), args.repeats
        )
    print(f"{len(built)} synthetic patients, {args.repeats} passes; microseconds per patient")
    print(f"{'step':<20} {'median':>10} {'min':>10}")
    for name, samples in results.items():
        print(f"{name:<20} {statistics.median(samples):>10.1f} {min(samples):>10.1f}")
    mapping = statistics.median(results["mapping + timeline"])
    for name in scorers:
        share = statistics.median(results[name]) / mapping
        print(f"{name}: {share:.0%} of the mapping + timeline step that precedes it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
