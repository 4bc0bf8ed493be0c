"""Materialization metadata shared by the refresh assets: counts from the ledger, failures, and
Markdown samples of the tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from killreport_assets.steps import StepOutcome
from killreport_assets.storage import LedgerStatus, Storage

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


def sample(storage: Storage, table: str, *, snapshot_date: dt.date | None = None) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(storage.reports.sample(table, snapshot_date=snapshot_date)))


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_no rows_"

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:80]

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
