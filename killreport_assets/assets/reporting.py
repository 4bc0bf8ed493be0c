"""Materialization metadata shared by the refresh assets: counts from the ledger, failures, table
samples the UI renders as tables, and charts drawn with pandas."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
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
        "failed_sample": as_table(pd.DataFrame([{"id": i, "last_error": (e or "")[:200]} for i, e in shown])),
    }


def sample(storage: Storage, table_name: str, *, snapshot_date: dt.date | None = None) -> dg.MetadataValue:
    return as_table(storage.reports.sample(table_name, snapshot_date=snapshot_date))


def as_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """A data frame as a table the UI renders, with a schema from its dtypes."""
    schema = dg.TableSchema(columns=[dg.TableColumn(str(name), _type(frame[name])) for name in frame.columns])
    records = [
        dg.TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in frame.to_dict(orient="records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def line_chart(frame: pd.DataFrame, title: str, ylabel: str) -> dg.MetadataValue:
    """A line per column of `frame` (indexed by date), drawn by pandas, as Markdown the asset page
    shows (a PNG inline: the UI renders Markdown images, and no file has to be served)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    if frame.empty:
        return dg.MetadataValue.md("_no snapshots yet_")
    axes = frame.plot(figsize=(9, 4.5), marker="o" if len(frame) < 15 else None, linewidth=1.4)
    if len(frame) == 1:  # one night: a day either side, not matplotlib's years
        day = pd.Timestamp(frame.index[0])
        axes.set_xlim(day - pd.Timedelta(days=1), day + pd.Timedelta(days=1))
    axes.set_title(title)
    axes.set_xlabel("snapshot date (UTC)")
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure = axes.get_figure()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def _type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value: Any) -> str | int | float | bool | None:
    if isinstance(value, dt.datetime | dt.date):  # pandas' Timestamp included
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, bool | int | float | str) else str(value)
