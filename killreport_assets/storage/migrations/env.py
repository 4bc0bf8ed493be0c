"""Alembic environment: always driven from code (`storage.database.migrate`), on a given connection."""

from alembic import context

from killreport_assets.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
