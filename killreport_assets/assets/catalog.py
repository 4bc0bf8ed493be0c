"""What the asset catalog shows before anything runs: owners, the code version, kinds with icons,
how fresh each asset must be, and the table behind it with its columns, taken from the schema
itself (one source).

Kinds follow the deployment the code location loads in: `postgres` or `sqlite` from the database
URL's scheme, and `rabbitmq` on the ESI steps when jobs go to workers. Only the schemes are read,
so a bad URL still fails where it is used, with its own message, and never stops the code location.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import dagster as dg
import sqlalchemy as sa

from killreport_assets.storage import columns
from killreport_assets.version import __version__

OWNERS = ["team:killreport"]
CODE_VERSION = __version__
# The refresh runs nightly and may take up to its 4-hour limit: an asset not materialized for 26 h
# missed a night's start (warn), for 30 h missed the night (fail, and `freshness_alert` posts it).
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=30), warn_window=dt.timedelta(hours=26)
)


def database_kind() -> str:
    return "postgres" if os.environ.get("KILLREPORT_DATABASE_URL", "").startswith("postgres") else "sqlite"


def kinds(*, esi_step: bool) -> set[str]:
    found = {database_kind()}
    if esi_step and os.environ.get("KILLREPORT_RABBITMQ_URL"):
        found.add("rabbitmq")
    return found


def column_schema(table: str | sa.Table) -> dg.TableSchema:
    defined = columns(table)
    key = [column.name for column in defined if column.primary_key]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type,
                # a column of a composite key is not unique on its own
                constraints=dg.TableColumnConstraints(nullable=column.nullable, unique=key == [column.name]),
                description=("the primary key" if len(key) == 1 else f"primary key ({', '.join(key)})")
                if column.primary_key
                else None,
            )
            for column in defined
        ]
    )


def table_metadata(table: str | sa.Table) -> dict[str, Any]:
    """Definition metadata naming the table an asset keeps and its columns."""
    name = table.name if isinstance(table, sa.Table) else table
    return {"dagster/table_name": name, "dagster/column_schema": column_schema(table)}


def definition(table: str | sa.Table, *, esi_step: bool) -> dict[str, Any]:
    """The `@dg.asset` arguments every refresh asset shares for the catalog."""
    return {
        "owners": OWNERS,
        "code_version": CODE_VERSION,
        "kinds": kinds(esi_step=esi_step),
        "metadata": table_metadata(table),
        "freshness_policy": FRESHNESS,
    }
