"""The three ESI steps of the nightly refresh: alliances → alliance_corporations → corporations.

The assets only orchestrate: choose the entities, run the kind's step, report. Fetching and writing
live in the job handler and storage.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from killreport_assets.assets.refresh import Refresh, esi_step
from killreport_assets.assets.reporting import as_table, sample
from killreport_assets.registry import ALLIANCE_CORPORATIONS, ALLIANCES, CORPORATIONS
from killreport_assets.storage import ListingShrank


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@esi_step(
    ALLIANCES,
    description=(
        "One row per alliance ESI has ever listed: its details as ESI last answered, the latest "
        "`member_count` and `corporation_count` (from `alliance_snapshot`), and `closed_at` once ESI "
        "stops listing it. Rows are never deleted."
    ),
)
def alliances(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    started = _now()
    settings = refresh.transport.refresh_settings()
    pruned = refresh.storage.retention.prune(ledger_days=settings.ledger_days, cache_days=settings.cache_days)
    context.log.info(
        "retention: deleted %d ledger rows of %d refreshes older than %d days, %d ESI answers not renewed "
        "in %d days, %d rows of processes gone",
        pruned.ledger_rows,
        pruned.refreshes,
        settings.ledger_days,
        pruned.cache_entries,
        settings.cache_days,
        pruned.process_rows,
    )
    names = refresh.storage.reports.names(ALLIANCES.name)
    listing = refresh.esi.alliance_ids()
    listed = listing.value or []
    if not listed:
        raise dg.Failure(
            description="ESI listed no alliances: refusing to close every alliance", allow_retries=True
        )
    response = None if listing.entry is None else (listing.url, listing.entry)
    max_close_share = settings.max_close_share
    try:
        closed, reopened = refresh.storage.listing.sync(
            ALLIANCES.store, listed, response, max_close_share=max_close_share
        )
    except ListingShrank as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info("alliances: ESI lists %d; %d newly closed, %d reopened", len(listed), closed, reopened)
    outcome = refresh.run(context, ALLIANCES, listed)
    changes = refresh.storage.reports.table_changes(ALLIANCES.name, started)
    now_named = refresh.storage.reports.names(ALLIANCES.name)
    renamed = [(i, names[i], name) for i, name in now_named.items() if i in names and names[i] != name]
    metadata = refresh.metadata(
        outcome,
        new_alliances=changes["created"],
        closed_alliances=changes["closed"],
        renamed_alliances=len(renamed),
        open_alliances=refresh.storage.reports.universe_series()["alliances"],
        changed_alliances=changes["updated"],
        listed=len(listed),
        pruned=dg.MetadataValue.json(pruned.as_dict()),
        **{
            "dagster/row_count": len(listed),
            "sample": sample(refresh.storage, ALLIANCES.name),
            **(
                {"renamed": as_table(pd.DataFrame(renamed[:20], columns=["id", "was", "now"]))}
                if renamed
                else {}
            ),
        },
    )
    return dg.MaterializeResult(metadata=metadata)


@esi_step(
    ALLIANCE_CORPORATIONS,
    deps=[alliances],
    description=(
        "One row per (alliance, member corporation) exactly as ESI lists each listed alliance's members "
        "tonight, with when the membership was first seen. Joins and leaves go to "
        "`alliance_membership_history`."
    ),
)
def alliance_corporations(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    storage = refresh.storage
    outcome = refresh.run(context, ALLIANCE_CORPORATIONS, storage.listing.open_ids(ALLIANCES.store))
    dropped = storage.memberships.drop_memberships_of_closed_alliances(context.run.run_id)
    events = storage.memberships.events(context.run.run_id)
    metadata = refresh.metadata(
        outcome,
        joined=events.get("joined", 0),
        left=events.get("left", 0),
        closed_alliance_leaves=dropped,
        **{
            "dagster/row_count": storage.memberships.count(),
            "sample": sample(storage, ALLIANCE_CORPORATIONS.name),
        },
    )
    return dg.MaterializeResult(metadata=metadata)


@esi_step(
    CORPORATIONS,
    deps=[alliance_corporations],
    description=(
        "One row per corporation that was ever a member of a listed alliance: its details as ESI last "
        "answered, `alliance_id` (NULL in no alliance), `confirmed_at` (when ESI last answered for it) and "
        "`closed_at` (ESI answered 404). Refreshed nightly: every member, every leaver, and a share of those "
        "in no alliance so each is confirmed at least every KILLREPORT_REVALIDATE_DAYS days."
    ),
)
def corporations(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    started = _now()
    days = refresh.transport.refresh_settings().revalidate_days
    chosen = refresh.storage.memberships.corporations_to_refresh(days)
    context.log.info(
        "corporations: %d members, %d leavers, and %d of the %d in no alliance (each confirmed every %d days)",
        len(chosen.members),
        len(chosen.leavers),
        len(chosen.revalidated),
        chosen.unaffiliated,
        days,
    )
    outcome = refresh.run(context, CORPORATIONS, chosen.ids)
    changes = refresh.storage.reports.table_changes(CORPORATIONS.name, started)
    metadata = refresh.metadata(
        outcome,
        new_corporations=changes["created"],
        changed_corporations=changes["updated"],
        closed_corporations=changes["closed"],
        open_corporations=refresh.storage.reports.universe_series()["corporations"],
        members=len(chosen.members),
        leavers=len(chosen.leavers),
        revalidated=len(chosen.revalidated),
        unaffiliated=chosen.unaffiliated,
        **{"dagster/row_count": len(chosen.ids), "sample": sample(refresh.storage, CORPORATIONS.name)},
    )
    return dg.MaterializeResult(metadata=metadata)
