"""Asset checks: referential integrity, snapshot completeness and consistency, failed entities, and
a day-over-day drop in total members."""

import dagster as dg
import sqlalchemy as sa

from killreport_assets.assets import alliance_corporations, alliance_snapshot, alliances, corporations
from killreport_assets.jobs.model import JobKind, LedgerStatus
from killreport_assets.resources import KillreportResource
from killreport_assets.storage import Storage
from killreport_assets.storage import tables as t

MEMBER_DROP_WARN = 0.20
SHOWN = 50


def _latest_snapshot_date(storage: Storage, table: sa.Table):
    return storage.scalar(sa.select(sa.func.max(table.c.snapshot_date)))


@dg.asset_check(asset=corporations, description="Every membership points at an existing, open corporation.")
def memberships_reference_corporations(
    context: dg.AssetCheckExecutionContext, killreport: KillreportResource
) -> dg.AssetCheckResult:
    storage = killreport.runtime.storage
    ac, c, ledger = t.alliance_corporations, t.corporations, t.refresh_ledger
    dangling = [
        r.corporation_id
        for r in storage.rows(
            sa.select(ac.c.corporation_id)
            .join(c, c.c.id == ac.c.corporation_id, isouter=True)
            .where(sa.or_(c.c.id.is_(None), c.c.closed_at.is_not(None)))
            .order_by(ac.c.corporation_id)
        )
    ]
    # Members whose fetch failed in this run are reported by `corporations_failed_entities` instead.
    failed = set(
        storage.rows(
            sa.select(ledger.c.entity_id).where(
                ledger.c.refresh_id == context.run.run_id,
                ledger.c.step == JobKind.CORPORATION.step,
                ledger.c.status == LedgerStatus.FAILED.value,
            )
        )
    )
    failed_ids = {row[0] for row in failed}
    unexplained = [i for i in dangling if i not in failed_ids]
    return dg.AssetCheckResult(
        passed=not unexplained,
        metadata={
            "dangling": len(unexplained),
            "dangling_ids": dg.MetadataValue.json(unexplained[:SHOWN]),
            "failed_in_this_run": len(dangling) - len(unexplained),
        },
    )


def _failed_entities_check(asset: dg.AssetsDefinition, kind: JobKind) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=f"{kind.step}_failed_entities",
        description=f"Entities of the {kind.step} step that failed permanently in this run (warns when any).",
    )
    def check(context: dg.AssetCheckExecutionContext, killreport: KillreportResource) -> dg.AssetCheckResult:
        storage = killreport.runtime.storage
        progress = storage.progress(context.run.run_id, kind.step)
        failures = storage.failures(context.run.run_id, kind.step)
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


alliances_failed_entities = _failed_entities_check(alliances, JobKind.ALLIANCE)
alliance_corporations_failed_entities = _failed_entities_check(
    alliance_corporations, JobKind.ALLIANCE_CORPORATIONS
)
corporations_failed_entities = _failed_entities_check(corporations, JobKind.CORPORATION)


@dg.asset_check(
    asset=alliance_snapshot, description="Every listed alliance has a snapshot row for the run's date."
)
def listed_alliances_have_snapshot(killreport: KillreportResource) -> dg.AssetCheckResult:
    storage = killreport.runtime.storage
    a, s = t.alliances, t.alliance_snapshots
    day = _latest_snapshot_date(storage, s)
    has_row = sa.exists().where(s.c.alliance_id == a.c.id, s.c.snapshot_date == day)
    missing = [
        r[0]
        for r in storage.rows(sa.select(a.c.id).where(a.c.closed_at.is_(None), ~has_row).order_by(a.c.id))
    ]
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
def totals_consistent(killreport: KillreportResource) -> dg.AssetCheckResult:
    storage = killreport.runtime.storage
    a, ac, c, s = t.alliances, t.alliance_corporations, t.corporations, t.alliance_snapshots
    day = _latest_snapshot_date(storage, s)
    snap = storage.rows(
        sa.select(
            sa.func.coalesce(sa.func.sum(s.c.corporation_count), 0),
            sa.func.coalesce(sa.func.sum(s.c.member_count), 0),
        ).where(s.c.snapshot_date == day)
    )[0]
    open_alliances = a.c.closed_at.is_(None)
    table = storage.rows(
        sa.select(
            sa.func.coalesce(sa.func.sum(a.c.corporation_count), 0),
            sa.func.coalesce(sa.func.sum(a.c.member_count), 0),
        ).where(open_alliances)
    )[0]
    members = storage.rows(
        sa.select(sa.func.count(c.c.id), sa.func.coalesce(sa.func.sum(c.c.member_count), 0))
        .select_from(ac)
        .join(a, a.c.id == ac.c.alliance_id)
        .join(c, c.c.id == ac.c.corporation_id)
        .where(open_alliances, c.c.closed_at.is_(None))
    )[0]
    figures = {
        "snapshot": {"corporations": int(snap[0]), "members": int(snap[1])},
        "alliances_table": {"corporations": int(table[0]), "members": int(table[1])},
        "memberships": {"corporations": int(members[0]), "members": int(members[1])},
    }
    passed = len({tuple(v.values()) for v in figures.values()}) == 1
    return dg.AssetCheckResult(
        passed=passed, metadata={"snapshot_date": str(day), "figures": dg.MetadataValue.json(figures)}
    )


@dg.asset_check(
    asset=alliance_snapshot,
    description=f"Total members did not drop more than {MEMBER_DROP_WARN:.0%} since the previous snapshot (warns).",
)
def member_total_day_over_day(killreport: KillreportResource) -> dg.AssetCheckResult:
    storage = killreport.runtime.storage
    s = t.alliance_snapshots
    totals = storage.rows(
        sa.select(s.c.snapshot_date, sa.func.sum(s.c.member_count))
        .group_by(s.c.snapshot_date)
        .order_by(s.c.snapshot_date.desc())
        .limit(2)
    )
    if len(totals) < 2:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no previous snapshot to compare with"})
    (day, today), (previous_day, previous) = ((d, int(n or 0)) for d, n in totals)
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
    alliances_failed_entities,
    alliance_corporations_failed_entities,
    corporations_failed_entities,
    listed_alliances_have_snapshot,
    totals_consistent,
    member_total_day_over_day,
]
