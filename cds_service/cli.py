"""`picu-endotype` command line: one sub-command per module that owns the work."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> (module exposing add_arguments(parser) and run(args) -> int, help text)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("cds_service.serve", "run the CDS Hooks service under gunicorn"),
    "synth": (
        "model.synth_cli",
        "write a seeded synthetic PICU cohort (FHIR NDJSON + outcomes CSV)",
    ),
    "train": ("model.train_cli", "train an endotype model on a cohort"),
    "evaluate": ("model.evaluate_cli", "evaluate a model on a cohort and write a report"),
    "db": ("cds_service.db_cli", "migrate the database schema, show it, purge old audit records"),
    "report": (
        "cds_service.report_cli",
        "cards joined to feedback (overrides) and one card's basis (audit)",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen sub-command's module is imported (start-up stays quick)."""
    parser = argparse.ArgumentParser(prog="picu-endotype", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module_name=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in arguments if word in SUBCOMMANDS), None)
    args = build_parser(command).parse_args(arguments)
    return int(importlib.import_module(args.module_name).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
