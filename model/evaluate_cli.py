"""`picu-endotype evaluate --cohort DIR --outcomes FILE --model MODEL --report OUT`.

Writes OUT as HTML (with inline SVG figures) and its JSON twin next to it (OUT with `.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model.cohort import CohortError, load_cohort
from model.evaluate import evaluate_model, summary_lines
from model.pipeline import ModelFileError, load_model
from model.report import render_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate sub-command."""
    parser.add_argument("--cohort", type=Path, required=True, help="directory of NDJSON files")
    parser.add_argument("--outcomes", type=Path, required=True, help="outcomes CSV")
    parser.add_argument("--model", type=Path, required=True, help="model file (.skops)")
    parser.add_argument("--report", type=Path, required=True, help="HTML report to write")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="random state of the bootstrap")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def json_path(report_path: Path) -> Path:
    """Where the JSON twin of an HTML report goes."""
    return report_path.with_suffix(".json")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the HTML report and its JSON twin, and print a short summary."""
    if args.bootstrap < 20:
        print("error: --bootstrap must be at least 20", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        model = load_model(args.model)
        cohort = load_cohort(args.cohort, args.outcomes)
        report = evaluate_model(
            model,
            cohort,
            n_bootstrap=args.bootstrap,
            random_state=args.seed,
            progress=not args.quiet,
        )
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render_report(report), encoding="utf-8")
        json_path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except (CohortError, ModelFileError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    print(
        f"wrote {args.report} and {json_path(args.report)} in {time.perf_counter() - started:.1f} s"
    )
    return 0
