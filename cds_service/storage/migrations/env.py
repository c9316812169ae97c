"""Alembic environment: migrations run on the connection `cds_service.storage.migrate` passes."""

from __future__ import annotations

from alembic import context

from cds_service.storage.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
