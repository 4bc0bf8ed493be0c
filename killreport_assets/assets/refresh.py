"""Running one registered kind's step from an asset: the transport, the wait, the failure policy
and the metadata every ESI step reports. An asset for a new kind is a few lines around `refresh`."""

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from killreport_assets.assets.catalog import definition
from killreport_assets.assets.reporting import failure_metadata, step_counts
from killreport_assets.esi import EsiClient
from killreport_assets.registry import EntityKind
from killreport_assets.resources import DatabaseResource, EsiResource, TransportResource
from killreport_assets.steps import StepError, StepOutcome, WaitPolicy, run_step
from killreport_assets.storage import Storage
from killreport_assets.transport.base import NoWorkerError

GROUP = "eve"
# Transient infrastructure errors (database, ESI outage, broker) are retried by Dagster; per-entity
# failures and timeouts are not (they raise `dg.Failure(allow_retries=False)`).
INFRA_RETRY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
ESI_POOL = "esi"
FAILED_SHOWN = 50


@dataclass(frozen=True)
class Refresh:
    """What one ESI step asset works with."""

    storage: Storage
    esi: EsiClient
    transport: TransportResource

    @classmethod
    def of(cls, database: DatabaseResource, esi: EsiResource, transport: TransportResource) -> "Refresh":
        storage = database.storage
        return cls(storage, esi.client(storage), transport)

    def run(self, context: dg.AssetExecutionContext, kind: EntityKind, ids: Sequence[int]) -> StepOutcome:
        """Run `kind`'s step for `ids` to completion; fail the asset when more entities failed than
        KILLREPORT_FAILURE_THRESHOLD allows."""
        settings = self.transport.refresh_settings()
        policy = WaitPolicy(
            timeout=settings.step_timeout(kind),
            stall_timeout=settings.stall_timeout,
            progress_interval=settings.progress_interval,
            poll_interval=self.transport.poll_interval_seconds,
            lease_ttl=settings.lease_ttl,
        )
        with self.transport.open(self.storage, self.esi) as transport:
            try:
                outcome = run_step(
                    self.storage,
                    transport,
                    context.run.run_id,
                    kind,
                    ids,
                    policy,
                    context.log,
                    holder=f"Dagster run {context.run.run_id} (job {context.run.job_name}) on "
                    f"{socket.gethostname()}, pid {os.getpid()}",
                )
            except (StepError, NoWorkerError) as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
        _enforce_failure_policy(kind, outcome, settings.failure_threshold)
        return outcome

    def metadata(self, outcome: StepOutcome, **extra: Any) -> dict[str, Any]:
        """What every ESI step reports: ledger counts, ESI answers, client stats, failures, plus
        `extra` (what changed in the step's own table)."""
        return {
            **step_counts(outcome),
            "esi_answers_by_status": dg.MetadataValue.json(outcome.progress.by_http_status),
            "esi_client": dg.MetadataValue.json(self.esi.stats()),
            "duration_seconds": round(outcome.seconds, 1),
            **failure_metadata(outcome),
            **extra,
        }


StepBody = Callable[[dg.AssetExecutionContext, Refresh], dg.MaterializeResult]


def esi_step(
    kind: EntityKind, *, description: str, deps: Sequence[dg.AssetsDefinition] = ()
) -> Callable[[StepBody], dg.AssetsDefinition]:
    """The asset of `kind`'s ESI step (named like the kind and its table), around
    `body(context, refresh)`: the group, retry policy, `esi` pool and catalog entries every ESI step
    shares, and the three resources it takes."""

    def decorate(body: StepBody) -> dg.AssetsDefinition:
        check = f"{kind.name}_failed_entities"

        @dg.asset(
            name=kind.name,
            group_name=GROUP,
            deps=deps,
            retry_policy=INFRA_RETRY,
            pool=ESI_POOL,
            description=description,
            check_specs=[
                dg.AssetCheckSpec(
                    check,
                    asset=kind.name,
                    description=f"Entities of the {kind.name} step that failed permanently in this run, and "
                    "why (warns when any; reported even when the step fails its failure threshold).",
                )
            ],
            **definition(kind.store.table, esi_step=True),
        )
        def step(
            context: dg.AssetExecutionContext,
            database: DatabaseResource,
            esi: EsiResource,
            transport: TransportResource,
        ) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
            refresh = Refresh.of(database, esi, transport)
            try:
                result = body(context, refresh)
            except dg.Failure:
                yield failed_entities(check, kind, refresh.storage, context.run.run_id)  # which, and why
                raise
            checked = failed_entities(check, kind, refresh.storage, context.run.run_id)
            yield dg.MaterializeResult(metadata=result.metadata, check_results=[checked])

        return step

    return decorate


def failed_entities(check: str, kind: EntityKind, storage: Storage, run_id: str) -> dg.AssetCheckResult:
    """The step's permanently failed entities in this run, with their last errors (WARN when any)."""
    progress = storage.ledger.progress(run_id, kind.name)
    failures = storage.ledger.failures(run_id, kind.name)
    ratio = len(failures) / progress.total if progress.total else 0.0
    return dg.AssetCheckResult(
        check_name=check,
        passed=not failures,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": len(failures),
            "entities": progress.total,
            "failed_ratio": round(ratio, 6),
            "failed_ids": dg.MetadataValue.json([i for i, _ in failures[:FAILED_SHOWN]]),
            "errors": dg.MetadataValue.json({str(i): (e or "")[:200] for i, e in failures[:10]}),
        },
    )


def _enforce_failure_policy(kind: EntityKind, outcome: StepOutcome, threshold: float) -> None:
    if outcome.failed_ratio <= threshold:
        return
    first = "; ".join(f"{i}: {(e or '')[:120]}" for i, e in outcome.failures[:5])
    raise dg.Failure(
        description=(
            f"{kind}: {outcome.progress.failed} of {outcome.progress.total} entities failed permanently "
            f"({outcome.failed_ratio:.1%}, above the {threshold:.0%} limit). First errors: {first}. "
            "ESI is probably degraded: re-run later (entities already fetched are served from the cache), "
            "or raise KILLREPORT_FAILURE_THRESHOLD if these IDs are known to be broken."
        ),
        metadata={**step_counts(outcome), **failure_metadata(outcome)},
        allow_retries=False,
    )
