"""Asset checks: referential integrity, snapshot completeness and consistency, and a day-over-day
drop in total members. (Each ESI step checks its failed entities itself: `assets/refresh.py`.)

The ERROR checks are blocking: a failing one fails the run (which alerts through the failure
webhook) and, on `corporations`, keeps a bad night out of the snapshots. The WARN checks report.
"""

import dagster as dg

from killreport_assets.assets import alliance_snapshot, corporation_snapshot, corporations
from killreport_assets.registry import CORPORATIONS
from killreport_assets.resources import DatabaseResource

MEMBER_DROP_WARN = 0.20
SHOWN = 50


@dg.asset_check(
    asset=corporations,
    blocking=True,
    description="Every membership points at an existing, open corporation (blocks the snapshots).",
)
def memberships_reference_corporations(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    storage = database.storage
    dangling = storage.memberships.dangling()
    # Members whose fetch failed in this run are reported by `corporations_failed_entities` instead.
    failed = set(storage.ledger.failed_ids(context.run.run_id, CORPORATIONS.name))
    unexplained = [i for i in dangling if i not in failed]
    return dg.AssetCheckResult(
        passed=not unexplained,
        metadata={
            "dangling": len(unexplained),
            "dangling_ids": dg.MetadataValue.json(unexplained[:SHOWN]),
            "failed_in_this_run": len(dangling) - len(unexplained),
        },
    )


def snapshot_complete_check(asset: dg.AssetsDefinition, of: str) -> dg.AssetChecksDefinition:
    """`open_<of>s_have_snapshot`: every open alliance or corporation has a row for the latest date."""

    @dg.asset_check(
        asset=asset,
        name=f"open_{of}s_have_snapshot",
        blocking=True,
        description=f"Every open {of} has a snapshot row for the latest snapshot date.",
    )
    def check(database: DatabaseResource) -> dg.AssetCheckResult:
        snapshots = database.storage.snapshots
        day = snapshots.latest_date(of)
        missing = snapshots.open_missing_from(of, day)
        return dg.AssetCheckResult(
            passed=day is not None and not missing,
            metadata={
                "snapshot_date": str(day),
                "missing": len(missing),
                "missing_ids": dg.MetadataValue.json(missing[:SHOWN]),
            },
        )

    return check


@dg.asset_check(
    asset=corporation_snapshot,
    blocking=True,
    description="Each snapshot row carries the member count and confirmation time `corporations` holds.",
)
def corporation_snapshot_matches_corporations(database: DatabaseResource) -> dg.AssetCheckResult:
    snapshots = database.storage.snapshots
    day = snapshots.latest_date("corporation")
    differing = snapshots.corporation_figures_differing(day)
    return dg.AssetCheckResult(
        passed=day is not None and not differing,
        metadata={
            "snapshot_date": str(day),
            "differing": len(differing),
            "differing_ids": dg.MetadataValue.json(differing[:SHOWN]),
        },
    )


@dg.asset_check(
    asset=alliance_snapshot,
    blocking=True,
    description="Corporation and member totals agree between the snapshot, `alliances` and the memberships.",
)
def totals_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    snapshots = database.storage.snapshots
    day = snapshots.latest_date("alliance")
    figures = snapshots.alliance_totals(day)
    passed = len({tuple(v.values()) for v in figures.values()}) == 1
    return dg.AssetCheckResult(
        passed=passed, metadata={"snapshot_date": str(day), "figures": dg.MetadataValue.json(figures)}
    )


@dg.asset_check(
    asset=alliance_snapshot,
    description=f"Total members did not drop more than {MEMBER_DROP_WARN:.0%} since the previous snapshot (warns).",
)
def member_total_day_over_day(database: DatabaseResource) -> dg.AssetCheckResult:
    totals = database.storage.snapshots.member_totals_by_day(2)
    if len(totals) < 2:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no previous snapshot to compare with"})
    (day, today), (previous_day, previous) = totals
    drop = (previous - today) / previous if previous else 0.0
    return dg.AssetCheckResult(
        passed=drop <= MEMBER_DROP_WARN,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "snapshot_date": str(day),
            "previous_date": str(previous_day),
            "total_members": today,
            "previous_total_members": previous,
            "drop": round(drop, 4),
        },
    )


ALL_CHECKS = [
    memberships_reference_corporations,
    snapshot_complete_check(alliance_snapshot, "alliance"),
    snapshot_complete_check(corporation_snapshot, "corporation"),
    corporation_snapshot_matches_corporations,
    totals_consistent,
    member_total_day_over_day,
]
