"""Open the database the settings name, with its schema migrated (or checked) at start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cds_service.storage.database import Database
from cds_service.storage.migrate import check_current, upgrade

if TYPE_CHECKING:
    from cds_service.settings import Settings


def open_database(settings: Settings) -> Database:
    """The configured database, migrated to the packaged schema (or checked to be current)."""
    database = Database(settings.database_url_text, pool_size=settings.database_pool_size)
    if settings.migrate_on_start:
        upgrade(database)
    else:
        check_current(database)
    return database
