"""`picu-endotype db`: migrate the schema, show its revision, purge old audit records.

picu-endotype db upgrade [--config FILE]
picu-endotype db current [--config FILE]
picu-endotype db purge   [--config FILE]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from cds_service.audit import AuditTrail
from cds_service.settings import load_settings
from cds_service.storage import Database, current_revision, head_revision, upgrade
from cds_service.storage.migrate import check_current


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="settings TOML file")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("upgrade", help="migrate the database schema to this version's")
    actions.add_parser("current", help="print the schema revision and the one this version needs")
    actions.add_parser("purge", help="delete audit records older than audit.retention_days")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = Database(settings.database_url_text)
    if args.action == "upgrade":
        before, after = upgrade(database)
        print(f"{database.describe()}: schema {before or 'empty'} -> {after}")
        return 0
    if args.action == "current":
        print(
            f"{database.describe()}: schema {current_revision(database) or 'empty'}, "
            f"this version needs {head_revision()}"
        )
        return 0
    check_current(database)
    trail = AuditTrail(database, b"", timedelta(days=settings.audit.retention_days))
    print(f"purged {trail.purge()} audit records older than {settings.audit.retention_days} days")
    return 0
