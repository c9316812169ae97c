"""`picu-endotype burden --cohort DIR --outcomes FILE`: how often each scorer flags a cohort.

Prints, for each assessment time after onset, the share of children rules v2, rules v1 and the
model scorer answer biomarker-guided, standard or insufficient data, and the persistence states;
`--json OUT` writes the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fhir_mappings.panel import load_panel
from model.burden import DEFAULT_AT_HOURS, alert_burden, burden_json, encounter_ends, render_burden
from model.cohort import CohortError, load_cohort, read_resources
from model.pipeline import ModelFileError
from model.rules import load_rule_scorer
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import load_model_scorer


def _hours(text: str) -> tuple[float, ...]:
    """Comma-separated positive hours, e.g. "24,48,72"."""
    try:
        hours = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected hours such as 24,48,72") from None
    if not hours or min(hours) <= 0:
        raise argparse.ArgumentTypeError("hours must be positive")
    return hours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the burden sub-command."""
    parser.add_argument("--cohort", type=Path, required=True, help="directory of NDJSON files")
    parser.add_argument("--outcomes", type=Path, required=True, help="outcomes CSV (onset_time)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: packaged)")
    parser.add_argument(
        "--at-hours",
        type=_hours,
        default=DEFAULT_AT_HOURS,
        help="assessment times after onset, comma-separated (default 24,48,72,120)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Load the cohort and the three scorers, count, print and optionally write JSON."""
    try:
        cohort = load_cohort(args.cohort, args.outcomes)
        ends = encounter_ends(read_resources(args.cohort, "Encounter"))
        scorers = {
            "rules-v2": load_rules_v2_scorer(),
            "rules-v1": load_rule_scorer(),
            "model": load_model_scorer(args.model),
        }
    except (CohortError, ModelFileError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    burden = alert_burden(cohort, scorers, load_panel(), at_hours=args.at_hours, ends=ends)
    for line in render_burden(burden):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(burden_json(burden), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
