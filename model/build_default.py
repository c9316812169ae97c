"""Rebuild the packaged default model: `python -m model.build_default [--out PATH]`.

Generates the seeded synthetic cohort (fixed size and seed), trains on its reference labels and
writes `model/default_model.skops` with its metadata. The same scikit-learn version gives the same
coefficients every time; a test rebuilds it and compares.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from model.cohort import load_cohort
from model.pipeline import EndotypeModel, save_model
from model.scorer import DEFAULT_MODEL_PATH
from model.synth import generate_cohort, write_cohort
from model.train import train_model

COHORT_SIZE = 1000
COHORT_SEED = 20240611
RANDOM_STATE = 0
MODEL_ID = "picu-endotype-synthetic-default"
MODEL_VERSION = "1.0.0"
DESCRIPTION = (
    "Default immune-endotype classifier shipped with picu-endotype, trained on a seeded "
    f"synthetic cohort (n={COHORT_SIZE}, seed={COHORT_SEED})."
)


def build_default_model(
    out: Path = DEFAULT_MODEL_PATH, *, n: int = COHORT_SIZE, seed: int = COHORT_SEED
) -> EndotypeModel:
    """Generate the synthetic cohort, train on it and save the model file to `out`."""
    with tempfile.TemporaryDirectory(prefix="picu-endotype-cohort-") as scratch:
        cohort_dir = Path(scratch)
        write_cohort(generate_cohort(n, seed), cohort_dir)
        cohort = load_cohort(cohort_dir, cohort_dir / "outcomes.csv")
        model = train_model(
            cohort,
            model_id=MODEL_ID,
            version=MODEL_VERSION,
            description=DESCRIPTION,
            random_state=RANDOM_STATE,
            progress=False,
        )
    metadata = dict(model.metadata)
    metadata["label_note"] = "reference labels are the synthetic generator's latent endotypes"
    metadata["training_cohort"] = {
        **metadata["training_cohort"],
        "generator": f"model.synth generate_cohort(n={n}, seed={seed})",
    }
    return save_model(EndotypeModel(model.estimator, metadata), out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: rebuild the default model (or write it elsewhere with --out)."""
    parser = argparse.ArgumentParser(prog="python -m model.build_default", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH, help="model file to write")
    args = parser.parse_args(argv)
    model = build_default_model(args.out)
    print(f"wrote {args.out} ({model.metadata['content_hash']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
