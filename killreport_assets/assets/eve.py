"""The three ESI steps of the nightly refresh: alliances → alliance_corporations → corporations.

The assets only orchestrate: choose the entities, hand their jobs to the transport, wait on the
ledger and report. Fetching and writing live in the job handlers and storage.
"""

import datetime as dt
from typing import Any

import dagster as dg
import sqlalchemy as sa

from killreport_assets.assets.reporting import (
    failure_metadata,
    sample,
    step_counts,
    table_changes,
    universe_series,
)
from killreport_assets.jobs.model import JobKind
from killreport_assets.resources import KillreportResource
from killreport_assets.runtime import Runtime
from killreport_assets.steps import StepError, StepOutcome, WaitPolicy, run_step
from killreport_assets.storage import tables as t

GROUP = "eve"
# Transient infrastructure errors (database, ESI outage, broker) are retried by Dagster; per-entity
# failures and timeouts are not (they raise `dg.Failure(allow_retries=False)`).
INFRA_RETRY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
ESI_POOL = "esi"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run(
    context: dg.AssetExecutionContext,
    runtime: Runtime,
    kind: JobKind,
    ids: list[int],
    timeout: float,
    poll: float,
) -> StepOutcome:
    settings = runtime.settings
    policy = WaitPolicy(
        timeout=timeout,
        stall_timeout=settings.stall_timeout,
        progress_interval=settings.progress_interval,
        poll_interval=poll,
    )
    with runtime.transport() as transport:
        try:
            outcome = run_step(runtime.storage, transport, context.run.run_id, kind, ids, policy, context.log)
        except StepError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    _enforce_failure_policy(kind.step, outcome, settings.failure_threshold)
    return outcome


def _enforce_failure_policy(step: str, outcome: StepOutcome, threshold: float) -> None:
    if outcome.failed_ratio <= threshold:
        return
    first = "; ".join(f"{i}: {(e or '')[:120]}" for i, e in outcome.failures[:5])
    raise dg.Failure(
        description=(
            f"{step}: {outcome.progress.failed} of {outcome.progress.total} entities failed permanently "
            f"({outcome.failed_ratio:.1%}, above the {threshold:.0%} limit). First errors: {first}. "
            "ESI is probably degraded: re-run later (entities already fetched are served from the cache), "
            "or raise KILLREPORT_FAILURE_THRESHOLD if these IDs are known to be broken."
        ),
        metadata={**step_counts(outcome), **failure_metadata(outcome)},
        allow_retries=False,
    )


def _metadata(
    runtime: Runtime, outcome: StepOutcome, changes: dict[str, int], extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        **step_counts(outcome),
        **changes,
        "esi_answers_by_status": dg.MetadataValue.json(outcome.progress.by_http_status),
        "esi_client": dg.MetadataValue.json(runtime.esi.stats()),
        "duration_seconds": round(outcome.seconds, 1),
        **failure_metadata(outcome),
        **universe_series(runtime.storage),
        **extra,
    }


@dg.asset(
    group_name=GROUP,
    kinds={"sql"},
    retry_policy=INFRA_RETRY,
    pool=ESI_POOL,
    description="Every alliance ESI lists, with its details; alliances no longer listed get `closed_at`.",
)
def alliances(context: dg.AssetExecutionContext, killreport: KillreportResource) -> dg.MaterializeResult:
    runtime = killreport.runtime
    started = _now()
    listed = runtime.esi.alliance_ids().value or []
    if not listed:
        raise dg.Failure(
            description="ESI listed no alliances: refusing to close every alliance", allow_retries=True
        )
    closed, reopened = runtime.storage.close_unlisted_alliances(listed)
    context.log.info("alliances: ESI lists %d; %d newly closed, %d reopened", len(listed), closed, reopened)
    outcome = _run(
        context,
        runtime,
        JobKind.ALLIANCE,
        listed,
        runtime.settings.step_timeouts.alliances,
        killreport.poll_interval_seconds,
    )
    a = t.alliances
    metadata = _metadata(
        runtime,
        outcome,
        table_changes(runtime.storage, a, started),
        {
            "listed": len(listed),
            "dagster/row_count": len(listed),
            "sample": sample(
                runtime.storage,
                sa.select(a.c.id, a.c.name, a.c.ticker, a.c.executor_corporation_id).order_by(a.c.id),
            ),
        },
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    deps=[alliances],
    kinds={"sql"},
    retry_policy=INFRA_RETRY,
    pool=ESI_POOL,
    description="The current member list of every listed alliance; joins and leaves go to history.",
)
def alliance_corporations(
    context: dg.AssetExecutionContext, killreport: KillreportResource
) -> dg.MaterializeResult:
    runtime = killreport.runtime
    ids = runtime.storage.open_alliance_ids()
    outcome = _run(
        context,
        runtime,
        JobKind.ALLIANCE_CORPORATIONS,
        ids,
        runtime.settings.step_timeouts.alliance_corporations,
        killreport.poll_interval_seconds,
    )
    dropped = runtime.storage.drop_memberships_of_closed_alliances(context.run.run_id)
    h, ac = t.membership_history, t.alliance_corporations
    events = dict(
        runtime.storage.rows(
            sa.select(h.c.event, sa.func.count())
            .where(h.c.refresh_id == context.run.run_id)
            .group_by(h.c.event)
        )
    )
    rows = runtime.storage.scalar(sa.select(sa.func.count()).select_from(ac))
    metadata = _metadata(
        runtime,
        outcome,
        {"joined": events.get("joined", 0), "left": events.get("left", 0), "closed_alliance_leaves": dropped},
        {
            "dagster/row_count": rows,
            "sample": sample(
                runtime.storage,
                sa.select(ac.c.alliance_id, ac.c.corporation_id, ac.c.first_seen_at).order_by(
                    ac.c.first_seen_at.desc(), ac.c.alliance_id
                ),
            ),
        },
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    deps=[alliance_corporations],
    kinds={"sql"},
    retry_policy=INFRA_RETRY,
    pool=ESI_POOL,
    description=(
        "Every member corporation, plus every corporation whose stored alliance no longer lists it "
        "(leavers); 404 sets `closed_at`."
    ),
)
def corporations(context: dg.AssetExecutionContext, killreport: KillreportResource) -> dg.MaterializeResult:
    runtime = killreport.runtime
    started = _now()
    members, leavers = runtime.storage.corporation_ids_to_refresh()
    context.log.info("corporations: %d members and %d leavers to refresh", len(members), len(leavers))
    outcome = _run(
        context,
        runtime,
        JobKind.CORPORATION,
        members + leavers,
        runtime.settings.step_timeouts.corporations,
        killreport.poll_interval_seconds,
    )
    c = t.corporations
    metadata = _metadata(
        runtime,
        outcome,
        table_changes(runtime.storage, c, started),
        {
            "members": len(members),
            "leavers": len(leavers),
            "dagster/row_count": len(members) + len(leavers),
            "sample": sample(
                runtime.storage,
                sa.select(c.c.id, c.c.name, c.c.ticker, c.c.alliance_id, c.c.member_count).order_by(
                    c.c.member_count.desc()
                ),
            ),
        },
    )
    return dg.MaterializeResult(metadata=metadata)
