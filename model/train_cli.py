"""`picu-endotype train --cohort DIR --outcomes FILE --out MODEL`: fit a model for a site."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from model.cohort import CohortError, load_cohort
from model.evaluate import anchor_line
from model.pipeline import EndotypeModel, save_model
from model.train import train_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the train sub-command."""
    parser.add_argument("--cohort", type=Path, required=True, help="directory of NDJSON files")
    parser.add_argument("--outcomes", type=Path, required=True, help="outcomes CSV")
    parser.add_argument("--out", type=Path, required=True, help="model file to write (.skops)")
    parser.add_argument("--model-id", default="site-endotype-model", help="model identifier")
    parser.add_argument("--model-version", default="1.0.0", help="model version")
    parser.add_argument("--developer", default=None, help="who trained it, with a contact")
    parser.add_argument("--description", default="Immune-endotype classifier trained on site data.")
    parser.add_argument("--seed", type=int, default=0, help="random state for splits and folds")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Train, save the model file and its metadata, and print a one-line summary."""
    if args.out.suffix != ".skops":
        print("error: --out must name a .skops file", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        cohort = load_cohort(args.cohort, args.outcomes)
        model = train_model(
            cohort,
            model_id=args.model_id,
            version=args.model_version,
            description=args.description,
            random_state=args.seed,
            progress=not args.quiet,
        )
        metadata = {**model.metadata, "developer": args.developer}
        saved = save_model(EndotypeModel(model.estimator, metadata), args.out)
    except (CohortError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _summary(saved, time.perf_counter() - started)
    return 0


def _summary(model: EndotypeModel, seconds: float) -> None:
    meta = model.metadata
    cohort = meta["training_cohort"]
    print(
        f"trained {meta['model_id']} {meta['version']} on {cohort['n_included']} of "
        f"{cohort['n_patients_in_cohort']} patients ({meta['label_source']} labels) in "
        f"{seconds:.1f} s; threshold {meta['threshold']:.3f}; "
        f"AUROC high-risk class {meta['internal_validation']['auroc_high_risk_class']}; "
        f"sha256 {meta['content_hash']}"
    )
    print(anchor_line(cohort.get("anchors", {})))
    if meta.get("synthetic_training_data"):
        print("note: every training patient is tagged synthetic; the model is not for clinical use")
