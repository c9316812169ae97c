"""`picu-endotype` command line: one sub-command per module that owns the work."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> module exposing add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("cds_service.serve", "run the CDS Hooks service under gunicorn"),
    "demo": ("cds_service.demo", "run the service against a sandbox FHIR server with synthetic patients"),
    "synth": ("model.synth_cli", "write a seeded synthetic PICU cohort (FHIR NDJSON + outcomes CSV)"),
    "train": ("model.train_cli", "train an endotype model on a cohort"),
    "evaluate": ("model.evaluate_cli", "evaluate a model on a cohort and write a report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picu-endotype", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module_name=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args.module_name).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
