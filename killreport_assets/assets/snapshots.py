"""Dated snapshots of alliance and corporation sizes, computed by SQL inside the database.

Unpartitioned on purpose: `--select '*'` and "Materialize all" just work, and a past date cannot be
recomputed from current data anyway. The date is the run's UTC date unless config names another.
"""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from killreport_assets.assets.eve import GROUP, INFRA_RETRY, corporations
from killreport_assets.assets.reporting import sample, universe_series
from killreport_assets.resources import KillreportResource
from killreport_assets.storage import tables as t


class SnapshotConfig(dg.Config):
    snapshot_date: str | None = None
    """ISO date (YYYY-MM-DD) to file the snapshot under; default: today's UTC date."""

    def day(self) -> dt.date:
        if self.snapshot_date is None:
            return dt.datetime.now(dt.UTC).date()
        try:
            return dt.date.fromisoformat(self.snapshot_date)
        except ValueError:
            raise dg.Failure(
                f"snapshot_date={self.snapshot_date!r} is not an ISO date; use YYYY-MM-DD",
                allow_retries=False,
            ) from None


def _report(
    context: dg.AssetExecutionContext,
    killreport: KillreportResource,
    day: dt.date,
    rows: int,
    sample_of: sa.Select,
) -> dg.MaterializeResult:
    storage = killreport.runtime.storage
    context.log.info("%s %s: %d rows", context.asset_key.to_user_string(), day, rows)
    return dg.MaterializeResult(
        metadata={
            "snapshot_date": day.isoformat(),
            "dagster/row_count": rows,
            **universe_series(storage),
            "sample": sample(storage, sample_of),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[corporations],
    kinds={"sql"},
    retry_policy=INFRA_RETRY,
    description="Per listed alliance and UTC date: member count (sum over member corporations) and corporation count.",
)
def alliance_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, killreport: KillreportResource
) -> dg.MaterializeResult:
    day = config.day()
    rows = killreport.runtime.storage.write_alliance_snapshot(day)
    s = t.alliance_snapshots
    return _report(
        context,
        killreport,
        day,
        rows,
        sa.select(s.c.alliance_id, s.c.member_count, s.c.corporation_count)
        .where(s.c.snapshot_date == day)
        .order_by(s.c.member_count.desc()),
    )


@dg.asset(
    group_name=GROUP,
    deps=[corporations],
    kinds={"sql"},
    retry_policy=INFRA_RETRY,
    description="Per open corporation and UTC date: member count.",
)
def corporation_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, killreport: KillreportResource
) -> dg.MaterializeResult:
    day = config.day()
    rows = killreport.runtime.storage.write_corporation_snapshot(day)
    s = t.corporation_snapshots
    return _report(
        context,
        killreport,
        day,
        rows,
        sa.select(s.c.corporation_id, s.c.member_count)
        .where(s.c.snapshot_date == day)
        .order_by(s.c.member_count.desc()),
    )
