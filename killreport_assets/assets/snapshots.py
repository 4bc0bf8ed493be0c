"""Dated snapshots of alliance and corporation sizes, computed by SQL inside the database.

Unpartitioned on purpose: `--select '*'` and "Materialize all" just work, and a past date cannot be
recomputed from current data anyway. The date is the run's UTC date unless config names another.
"""

import datetime as dt
from collections.abc import Callable

import dagster as dg

from killreport_assets.assets.catalog import definition
from killreport_assets.assets.eve import corporations
from killreport_assets.assets.refresh import GROUP, INFRA_RETRY
from killreport_assets.assets.reporting import as_table, line_chart, sample
from killreport_assets.resources import DatabaseResource
from killreport_assets.storage import Storage


class SnapshotConfig(dg.Config):
    snapshot_date: str | None = None
    """ISO date (YYYY-MM-DD) to file the snapshot under; default: the run's UTC date. Another date
    is refused unless `force` is set: a snapshot is computed from today's data, so filing it under
    another day would overwrite that day's history with today's figures."""
    force: bool = False
    """Allow a `snapshot_date` other than today's UTC date (it replaces that date's rows)."""

    def day(self) -> dt.date:
        today = dt.datetime.now(dt.UTC).date()
        if self.snapshot_date is None:
            return today
        try:
            day = dt.date.fromisoformat(self.snapshot_date)
        except ValueError:
            raise dg.Failure(
                f"snapshot_date={self.snapshot_date!r} is not an ISO date; use YYYY-MM-DD",
                allow_retries=False,
            ) from None
        if day != today and not self.force:
            raise dg.Failure(
                f"snapshot_date={day.isoformat()} is not today's UTC date ({today.isoformat()}): the snapshot "
                "is computed from today's data and would replace that day's rows with today's figures. "
                "Leave snapshot_date unset, or set force: true to file today's figures under that date.",
                allow_retries=False,
            )
        return day


def _snapshot_asset(
    name: str, of: str, write: Callable[[Storage, dt.date], int], description: str
) -> dg.AssetsDefinition:
    table = f"{of}_snapshots"

    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=[corporations],
        retry_policy=INFRA_RETRY,
        description=description,
        **definition(table, esi_step=False),
    )
    def snapshot(
        context: dg.AssetExecutionContext, config: SnapshotConfig, database: DatabaseResource
    ) -> dg.MaterializeResult:
        day, storage = config.day(), database.storage
        rows = write(storage, day)
        context.log.info("%s %s: %d rows", name, day, rows)
        movers = storage.reports.movers(of, day)
        metadata: dict[str, object] = {
            "snapshot_date": day.isoformat(),
            "dagster/row_count": rows,
            "total_members": storage.reports.universe_series()["total_members"],
            "sample": sample(storage, table, snapshot_date=day),
            "top_movers": as_table(movers) if not movers.empty else "no earlier snapshot, or no change",
        }
        if of == "alliance":
            metadata["largest_alliances_chart"] = line_chart(
                storage.reports.largest_alliances_history(),
                "Members of today's largest alliances, by snapshot date",
                "members",
            )
        return dg.MaterializeResult(metadata=metadata)

    return snapshot


alliance_snapshot = _snapshot_asset(
    "alliance_snapshot",
    "alliance",
    lambda storage, day: storage.snapshots.write_alliance_snapshot(day),
    "One row per open alliance per UTC date: `member_count` (the sum over its open member corporations) "
    "and `corporation_count`. A re-run on the same date replaces that date's rows; another date needs "
    "`force`. The page charts the largest alliances over the stored snapshots.",
)
corporation_snapshot = _snapshot_asset(
    "corporation_snapshot",
    "corporation",
    lambda storage, day: storage.snapshots.write_corporation_snapshot(day),
    "One row per open corporation per UTC date: `member_count` and `confirmed_at` (when ESI confirmed "
    "that figure: that night for alliance members, up to KILLREPORT_REVALIDATE_DAYS earlier for those in "
    "no alliance). A re-run on the same date replaces that date's rows.",
)
