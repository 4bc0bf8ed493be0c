"""Dated snapshots of alliance and corporation sizes, computed by SQL inside the database.

Unpartitioned on purpose: `--select '*'` and "Materialize all" just work, and a past date cannot be
recomputed from current data anyway. The date is the run's UTC date unless config names another.
"""

import datetime as dt
from collections.abc import Callable

import dagster as dg

from killreport_assets.assets.eve import corporations
from killreport_assets.assets.refresh import GROUP, INFRA_RETRY
from killreport_assets.assets.reporting import sample
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
    name: str, table: str, write: Callable[[Storage, dt.date], int], description: str
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=[corporations],
        kinds={"sql"},
        retry_policy=INFRA_RETRY,
        description=description,
    )
    def snapshot(
        context: dg.AssetExecutionContext, config: SnapshotConfig, database: DatabaseResource
    ) -> dg.MaterializeResult:
        day, storage = config.day(), database.storage
        rows = write(storage, day)
        context.log.info("%s %s: %d rows", name, day, rows)
        return dg.MaterializeResult(
            metadata={
                "snapshot_date": day.isoformat(),
                "dagster/row_count": rows,
                **storage.reports.universe_series(),
                "sample": sample(storage, table, snapshot_date=day),
            }
        )

    return snapshot


alliance_snapshot = _snapshot_asset(
    "alliance_snapshot",
    "alliance_snapshots",
    lambda storage, day: storage.snapshots.write_alliance_snapshot(day),
    "Per listed alliance and UTC date: member count (sum over member corporations) and corporation count.",
)
corporation_snapshot = _snapshot_asset(
    "corporation_snapshot",
    "corporation_snapshots",
    lambda storage, day: storage.snapshots.write_corporation_snapshot(day),
    "Per open corporation and UTC date: member count.",
)
