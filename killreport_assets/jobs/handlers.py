"""Job handlers: the only place that joins the ESI client to storage's data model.

A handler fetches one entity through the ESI client and turns the answer into an `Outcome`; the
transport then writes outcomes (data rows and ledger rows together, in one transaction per batch)
through `Storage.apply`. The same handlers run in the embedded thread pool and in `killreport worker`.
"""

from __future__ import annotations

from collections.abc import Callable

from killreport_assets.esi import EsiClient, EsiError, EsiResult, EsiUnavailable
from killreport_assets.esi import Outcome as EsiOutcome
from killreport_assets.esi.client import ALLIANCE_CORPORATIONS_ROUTE, ALLIANCE_ROUTE, CORPORATION_ROUTE
from killreport_assets.jobs.model import Job, JobKind, LedgerStatus, Outcome

_FETCHERS: dict[JobKind, Callable[[EsiClient, int], EsiResult]] = {
    JobKind.ALLIANCE: EsiClient.alliance,
    JobKind.ALLIANCE_CORPORATIONS: EsiClient.alliance_corporations,
    JobKind.CORPORATION: EsiClient.corporation,
}

_ROUTES = {
    JobKind.ALLIANCE: ALLIANCE_ROUTE,
    JobKind.ALLIANCE_CORPORATIONS: ALLIANCE_CORPORATIONS_ROUTE,
    JobKind.CORPORATION: CORPORATION_ROUTE,
}

_STATUS = {
    EsiOutcome.FETCHED: LedgerStatus.DONE,
    EsiOutcome.UNCHANGED: LedgerStatus.UNCHANGED,
    EsiOutcome.CACHED: LedgerStatus.UNCHANGED,
    EsiOutcome.GONE: LedgerStatus.GONE,
}


def handle(job: Job, client: EsiClient) -> Outcome:
    """Run one job. ESI failures become a FAILED outcome (recorded, never retried forever); anything
    else (a bug, the database) propagates so the transport can retry or stop."""
    try:
        result = _FETCHERS[job.kind](client, job.entity_id)
    except EsiError as exc:
        return Outcome(
            job=job,
            status=LedgerStatus.FAILED,
            http_status=exc.status,
            attempts=exc.attempts if isinstance(exc, EsiUnavailable) else 1,
            error=str(exc)[:2000],
        )
    return Outcome(
        job=job,
        status=_STATUS[result.outcome],
        value=result.value,
        http_status=result.status,
        attempts=result.attempts,
    )


def cache_key(job: Job, client: EsiClient) -> str:
    """The URL whose cache entry `job` will read, so a batch's entries can be loaded in one query."""
    return client.url(_ROUTES[job.kind], job.entity_id)
