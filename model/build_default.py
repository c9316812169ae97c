"""Rebuild the packaged default model: `python -m model.build_default [--out PATH]`.

Generates the seeded synthetic cohort (fixed size and seed), anchors each child at its Phoenix
onset as the service would, trains on its reference labels and writes
`model/default_model.skops` with its metadata. The generated resources are grouped in memory as
`load_cohort` groups the files (the generator's output is checked against FHIR R4 by its own
tests), so the build skips writing and re-validating some 190,000 resources. The same
scikit-learn version gives the same coefficients every time; a test rebuilds it and compares.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from model.cohort import cohort_of, read_outcomes
from model.pipeline import EndotypeModel, save_model
from model.scorer import DEFAULT_MODEL_PATH
from model.synth import generate_cohort, outcomes_csv_text
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
    generated = generate_cohort(n, seed)
    with tempfile.TemporaryDirectory(prefix="picu-endotype-cohort-") as scratch:
        outcomes_file = Path(scratch) / "outcomes.csv"
        outcomes_file.write_text(outcomes_csv_text(generated.outcomes), encoding="utf-8")
        resources = (
            *generated.patients,
            *generated.encounters,
            *generated.observations,
            *generated.phoenix,
        )
        cohort = cohort_of(read_outcomes(outcomes_file), resources)
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
