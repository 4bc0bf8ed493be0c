"""Materialization metadata shared by the refresh assets: counts from the ledger and the tables,
ESI answers by status, a Markdown sample, and the numeric series Dagster plots across runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from killreport_assets.jobs.model import LedgerStatus
from killreport_assets.steps import StepOutcome
from killreport_assets.storage import Storage
from killreport_assets.storage import tables as t

FAILED_IDS_SHOWN = 100


def step_counts(outcome: StepOutcome) -> dict[str, int]:
    by_status, by_http = outcome.progress.by_status, outcome.progress.by_http_status
    return {
        "entities": outcome.progress.total,
        "fetched": by_status.get(LedgerStatus.DONE, 0),
        "unchanged_304": by_http.get("304", 0),
        "served_from_cache": by_http.get("cache", 0),
        "gone": by_status.get(LedgerStatus.GONE, 0),
        "failed": by_status.get(LedgerStatus.FAILED, 0),
    }


def table_changes(storage: Storage, table: sa.Table, since: dt.datetime) -> dict[str, int]:
    """Rows created, updated and closed since `since` (exact: `updated_at` moves only on change)."""
    created = sa.func.count().filter(table.c.created_at >= since)
    updated = sa.func.count().filter(table.c.updated_at >= since, table.c.created_at < since)
    closed = sa.func.count().filter(table.c.closed_at >= since)
    row = storage.rows(sa.select(created, updated, closed))[0]
    return {"created": row[0], "updated": row[1], "closed": row[2]}


def universe_series(storage: Storage) -> dict[str, int]:
    """The figures plotted across runs: open alliances, open corporations, total members."""
    a, c = t.alliances, t.corporations
    return {
        "alliances": storage.scalar(sa.select(sa.func.count()).where(a.c.closed_at.is_(None))),
        "corporations": storage.scalar(sa.select(sa.func.count()).where(c.c.closed_at.is_(None))),
        "total_members": int(
            storage.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(c.c.member_count), 0)).where(
                    c.c.closed_at.is_(None), c.c.alliance_id.is_not(None)
                )
            )
        ),
    }


def failure_metadata(outcome: StepOutcome) -> dict[str, Any]:
    if not outcome.failures:
        return {}
    shown = outcome.failures[:FAILED_IDS_SHOWN]
    return {
        "failed_ids": dg.MetadataValue.json([i for i, _ in shown]),
        "failed_sample": dg.MetadataValue.md(
            markdown_table(pd.DataFrame([{"id": i, "last_error": (e or "")[:200]} for i, e in shown]))
        ),
    }


def sample(storage: Storage, query: sa.Select, limit: int = 10) -> dg.MetadataValue:
    with storage.engine.connect() as conn:
        frame = pd.read_sql(query.limit(limit), conn)
    return dg.MetadataValue.md(markdown_table(frame))


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_no rows_"

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:80]

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
