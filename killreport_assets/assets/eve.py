"""The three ESI steps of the nightly refresh: alliances → alliance_corporations → corporations.

The assets only orchestrate: choose the entities, run the kind's step, report. Fetching and writing
live in the job handler and storage.
"""

import datetime as dt

import dagster as dg

from killreport_assets.assets.refresh import Refresh, esi_step
from killreport_assets.assets.reporting import sample
from killreport_assets.registry import ALLIANCE_CORPORATIONS, ALLIANCES, CORPORATIONS


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@esi_step(
    ALLIANCES,
    description="Every alliance ESI lists, with its details; alliances no longer listed get `closed_at`.",
)
def alliances(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    started = _now()
    listing = refresh.esi.alliance_ids()
    listed = listing.value or []
    if not listed:
        raise dg.Failure(
            description="ESI listed no alliances: refusing to close every alliance", allow_retries=True
        )
    response = None if listing.entry is None else (listing.url, listing.entry)
    closed, reopened = refresh.storage.listing.sync(ALLIANCES.store, listed, response)
    context.log.info("alliances: ESI lists %d; %d newly closed, %d reopened", len(listed), closed, reopened)
    outcome = refresh.run(context, ALLIANCES, listed)
    metadata = refresh.metadata(
        outcome,
        **refresh.storage.reports.table_changes(ALLIANCES.name, started),
        listed=len(listed),
        **{"dagster/row_count": len(listed), "sample": sample(refresh.storage, ALLIANCES.name)},
    )
    return dg.MaterializeResult(metadata=metadata)


@esi_step(
    ALLIANCE_CORPORATIONS,
    deps=[alliances],
    description="The current member list of every listed alliance; joins and leaves go to history.",
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
        "Every member corporation, plus every corporation whose stored alliance no longer lists it "
        "(leavers); 404 sets `closed_at`."
    ),
)
def corporations(context: dg.AssetExecutionContext, refresh: Refresh) -> dg.MaterializeResult:
    started = _now()
    members, leavers = refresh.storage.memberships.corporation_ids_to_refresh()
    context.log.info("corporations: %d members and %d leavers to refresh", len(members), len(leavers))
    outcome = refresh.run(context, CORPORATIONS, members + leavers)
    metadata = refresh.metadata(
        outcome,
        **refresh.storage.reports.table_changes(CORPORATIONS.name, started),
        members=len(members),
        leavers=len(leavers),
        **{
            "dagster/row_count": len(members) + len(leavers),
            "sample": sample(refresh.storage, CORPORATIONS.name),
        },
    )
    return dg.MaterializeResult(metadata=metadata)
