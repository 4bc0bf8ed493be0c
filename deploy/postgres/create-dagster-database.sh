#!/bin/sh
# Run by the postgres image once, when its data volume is first initialised: Dagster's own database
# (runs, event logs, schedule state) next to the application database, on the same server.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"$DAGSTER_PG_DB\" OWNER \"$POSTGRES_USER\""
