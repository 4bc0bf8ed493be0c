"""The job handler: the only place that joins the ESI client to storage's data model.

`handle` fetches one entity of any registered kind through the ESI client and turns the answer into
an `Outcome`; a transport's writer then hands outcomes to `Storage.apply` (data, ledger row and the
response, in one transaction per batch). The same handler runs in the embedded pool and in
`killreport worker`.
"""

from __future__ import annotations

from killreport_assets.esi import Answer, EsiClient, EsiError, EsiUnavailable
from killreport_assets.jobs.model import Job, LedgerStatus, Outcome
from killreport_assets.registry import Gone

_STATUS = {
    Answer.FETCHED: LedgerStatus.DONE,
    Answer.UNCHANGED: LedgerStatus.UNCHANGED,
    Answer.CACHED: LedgerStatus.UNCHANGED,
    Answer.GONE: LedgerStatus.GONE,
}


def handle(job: Job, client: EsiClient, *, max_requests: int | None = None) -> Outcome:
    """Run one job, sending at most `max_requests` ESI requests (default: the client's attempts).
    ESI failures become a FAILED outcome (recorded, never retried forever); anything else (a bug,
    the database, `EsiPaused`) propagates so the transport can retry or stop."""
    try:
        result = client.fetch(job.kind.route, job.entity_id, job.kind.parse, max_attempts=max_requests)
    except EsiError as exc:
        return Outcome(
            job=job,
            status=LedgerStatus.FAILED,
            http_status=exc.status,
            attempts=exc.attempts if isinstance(exc, EsiUnavailable) else 1,
            error=str(exc)[:2000],
        )
    if result.answer is Answer.GONE and job.kind.gone is Gone.RETRY:
        return Outcome(
            job=job,
            status=LedgerStatus.FAILED,
            http_status=result.status,
            attempts=result.attempts,
            error=f"ESI answered 404 for {job.kind} {job.entity_id}, where it documents none: kept what is "
            "stored; tried again later",
        )
    return Outcome(
        job=job,
        status=_STATUS[result.answer],
        value=result.value,
        http_status=result.status,
        attempts=result.attempts,
        response=None if result.entry is None else (result.url, result.entry),
    )
