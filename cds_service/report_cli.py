"""`picu-endotype report`: cards joined to their feedback, and one card's basis.

picu-endotype report overrides --since 2026-01-01 [--until …] [--csv overrides.csv]
picu-endotype report audit --card UUID [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from cds_service.reports import card_basis, card_outcomes, print_table, summarise, write_csv
from cds_service.settings import load_settings
from cds_service.storage import Database, SchemaNotCurrent, check_current


def _instant(text: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 instant (UTC when no offset is given)."""
    try:
        parsed = datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="settings TOML file")
    reports = parser.add_subparsers(dest="report", required=True, metavar="REPORT")
    overrides = reports.add_parser(
        "overrides", help="accepted, overridden, ignored and silent cards by pathway and reason"
    )
    overrides.add_argument("--since", type=_instant, required=True, help="date or ISO instant")
    overrides.add_argument("--until", type=_instant, help="date or ISO instant (exclusive)")
    overrides.add_argument(
        "--csv", type=Path, default=Path("overrides.csv"), help="CSV output (overrides.csv)"
    )
    audit = reports.add_parser("audit", help="one card's basis from the audit trail")
    audit.add_argument("--card", required=True, help="the card's uuid")
    audit.add_argument("--json", action="store_true", help="print the record as JSON")


def _value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def print_basis(basis: dict[str, Any]) -> None:
    """One card's audit record as text: who, when, the decision, every input, what was missing."""
    record = basis["record"]
    print(f"card {record['card_uuid']}  recorded {_value(record['recorded_at'])}")
    print(f"  hookInstance {record['hook_instance']}  issuer {record['issuer']}")
    print(f"  user {record['user_id']}  tenant {record['tenant']}")
    print(f"  patient (pseudonym) {record['patient']}  encounter (pseudonym) {record['encounter']}")
    print(
        f"  outcome {record['outcome']}  shown to the user: {'yes' if record['returned'] else 'no'}"
    )
    print(
        f"  scorer {record['scorer_id']}/{record['scorer_version']}  sha256 {record['scorer_hash']}"
    )
    print(f"  pathway {record['pathway']}  endotype {record['endotype']}")
    print(f"  persistence {record['persistence']}  anchor {record['anchor']}")
    print(f"  summary: {record['summary']}")
    print(
        f"  data from {record['data_source']}: FHIR calls {record['fhir_calls']} "
        f"({record['fhir_seconds'] * 1000:.0f} ms), hook {record['duration_seconds'] * 1000:.0f} ms"
    )
    print("  inputs:")
    for item in record["inputs"]:
        comparator = item.get("comparator") or ""
        print(
            f"    {item['analyte']:<12} {comparator}{item['value']:g} {item['unit']:<9} "
            f"{item['time']}  {item['system']}|{item['code']}  Observation/{item['observation_id']}"
            f"  ({item['role']})"
        )
    print(f"  missing: {', '.join(record['missing']) or 'nothing'}")
    for item in record["excluded"]:
        print(
            f"  excluded: {item['analyte']} {item['reason']} Observation/{item['observation_id']}"
        )
    for item in basis["feedback"]:
        reason = f" reason {item['override_code']}" if item["override_code"] else ""
        print(f"  feedback: {item['outcome']} at {_value(item['outcome_timestamp'])}{reason}")
    if not basis["feedback"]:
        print("  feedback: none")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = Database(settings.database_url_text)
    try:
        check_current(database)
    except SchemaNotCurrent as error:
        print(f"picu-endotype report: {error}", file=sys.stderr)
        return 2
    if args.report == "audit":
        basis = card_basis(database, args.card)
        if basis is None:
            print(f"picu-endotype report: no audit record of card {args.card}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(basis, default=_value, indent=2))
        else:
            print_basis(basis)
        return 0
    outcomes = card_outcomes(database, args.since, args.until)
    rows = summarise(outcomes)
    period = f"{args.since.isoformat()} to {args.until.isoformat() if args.until else 'now'}"
    print(f"{len(outcomes)} cards recorded from {period} ({database.describe()})")
    print_table(rows, sys.stdout)
    write_csv(rows, args.csv)
    print(f"wrote {args.csv}")
    return 0
