"""Asset checks: referential integrity, snapshot completeness and consistency, failed entities of
every registered kind, and a day-over-day drop in total members."""

import dagster as dg

from killreport_assets.assets import alliance_snapshot, corporations
from killreport_assets.registry import CORPORATIONS, REGISTRY, EntityKind
from killreport_assets.resources import DatabaseResource

MEMBER_DROP_WARN = 0.20
SHOWN = 50


@dg.asset_check(asset=corporations, description="Every membership points at an existing, open corporation.")
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


def failed_entities_check(kind: EntityKind) -> dg.AssetChecksDefinition:
    """`<kind>_failed_entities` on the kind's asset: warns when any entity failed permanently."""

    @dg.asset_check(
        asset=dg.AssetKey(kind.name),
        name=f"{kind.name}_failed_entities",
        description=f"Entities of the {kind.name} step that failed permanently in this run (warns when any).",
    )
    def check(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
        ledger = database.storage.ledger
        progress = ledger.progress(context.run.run_id, kind.name)
        failures = ledger.failures(context.run.run_id, kind.name)
        ratio = len(failures) / progress.total if progress.total else 0.0
        return dg.AssetCheckResult(
            passed=not failures,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "failed": len(failures),
                "entities": progress.total,
                "failed_ratio": round(ratio, 6),
                "failed_ids": dg.MetadataValue.json([i for i, _ in failures[:SHOWN]]),
                "errors": dg.MetadataValue.json({str(i): (e or "")[:200] for i, e in failures[:10]}),
            },
        )

    return check


@dg.asset_check(
    asset=alliance_snapshot, description="Every listed alliance has a snapshot row for the run's date."
)
def listed_alliances_have_snapshot(database: DatabaseResource) -> dg.AssetCheckResult:
    snapshots = database.storage.snapshots
    day = snapshots.latest_alliance_snapshot_date()
    missing = snapshots.open_alliances_missing_from(day)
    return dg.AssetCheckResult(
        passed=day is not None and not missing,
        metadata={
            "snapshot_date": str(day),
            "missing": len(missing),
            "missing_ids": dg.MetadataValue.json(missing[:SHOWN]),
        },
    )


@dg.asset_check(
    asset=alliance_snapshot,
    description="Corporation and member totals agree between the snapshot, `alliances` and the memberships.",
)
def totals_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    snapshots = database.storage.snapshots
    day = snapshots.latest_alliance_snapshot_date()
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
    *(failed_entities_check(kind) for kind in REGISTRY),
    listed_alliances_have_snapshot,
    totals_consistent,
    member_total_day_over_day,
]
