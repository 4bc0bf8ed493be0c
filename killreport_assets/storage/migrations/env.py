"""Alembic environment: always driven from code (`storage.database`): online on a given connection
(`migrate`), or offline to print the SQL for review (`upgrade_sql`, `killreport migrate --sql`)."""

from alembic import context

from killreport_assets.storage.tables import metadata

if context.is_offline_mode():
    context.configure(
        url=context.config.attributes["offline_url"],
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
else:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
