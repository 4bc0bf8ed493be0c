"""Which jobs are still worth ESI requests, and how many each may spend.

Before a job costs a request, the ledger and the step's lease are asked: a job whose entity is
already finished in its refresh (a duplicate delivery, a job republished by a retried step), or
whose refresh no longer holds the step (the run failed, was cancelled, or died and another took
over), is skipped; a live one may spend what is left of its entity's per-refresh request budget,
counted across client retries, queue attempts and step retries.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

from killreport_assets.esi import EsiClient
from killreport_assets.jobs.handlers import handle
from killreport_assets.jobs.model import Job, LedgerStatus, Outcome
from killreport_assets.storage import Storage
from killreport_assets.storage.leases import Lease

# ESI requests one entity may cost in one refresh, everything included.
ENTITY_REQUEST_BUDGET = 10
# How long a worker trusts what it read about a step's lease.
_LEASE_RECHECK = 2.0


@dataclass(frozen=True)
class Skipped:
    """A job that gets no ESI request: `outcome` to record (None: nothing, it is already recorded)."""

    reason: str
    outcome: Outcome | None = None


class JobGate:
    """Thread-safe."""

    def __init__(self, storage: Storage, *, lease_ttl: float, budget: int = ENTITY_REQUEST_BUDGET) -> None:
        self._storage = storage
        self._budget = budget
        self._lease_ttl = lease_ttl
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._leases_read = float("-inf")

    def run(self, job: Job, client: EsiClient, *, spent: int = 0) -> Outcome | Skipped:
        """Fetch `job` within its budget, or say why not. Database errors propagate.

        A step's job counts its requests in the ledger; an on-demand job (no ledger row until it
        finishes) carries `spent`, the requests of its earlier attempts, and its outcome counts them."""
        state = self._storage.ledger.state(job.refresh_id, job.kind.name, job.entity_id)
        if state is None:
            if spent >= self._budget:
                return Skipped(
                    self._exhausted(), _outcome(job, LedgerStatus.FAILED, self._exhausted(), spent)
                )
            outcome = handle(job, client, max_requests=self._budget - spent)
            return dataclasses.replace(outcome, attempts=outcome.attempts + spent)
        status, spent = state
        if status is not LedgerStatus.PENDING:
            return Skipped(f"already {status} in refresh {job.refresh_id}")
        lease = self._lease(job.kind.name, job.refresh_id)
        if lease is not None and (lease.refresh_id != job.refresh_id or not lease.alive(self._lease_ttl)):
            reason = (
                f"refresh {job.refresh_id} no longer runs the {job.kind} step (now held by {lease.describe()}): "
                "its run ended without finishing this entity"
                if lease.refresh_id != job.refresh_id
                else f"refresh {job.refresh_id} stopped renewing the {job.kind} step at "
                f"{lease.heartbeat_at:%H:%M:%S} UTC: its run died without finishing this entity"
            )
            return Skipped(reason, _outcome(job, LedgerStatus.WITHDRAWN, reason))
        if spent >= self._budget:
            return Skipped(self._exhausted(), _outcome(job, LedgerStatus.FAILED, self._exhausted()))
        return handle(job, client, max_requests=self._budget - spent)

    def spent(self, job: Job, requests: int) -> None:
        """Count the requests of an attempt that is going to be retried."""
        self._storage.ledger.spend(job.refresh_id, job.kind.name, job.entity_id, requests)

    def _exhausted(self) -> str:
        return f"spent its {self._budget} ESI requests for this refresh without an answer; not retried"

    def _lease(self, step: str, refresh_id: str) -> Lease | None:
        """The step's lease, read at most every `_LEASE_RECHECK` seconds while it vouches for the
        job, and afresh before it condemns one (a new run may have just taken the step over)."""
        with self._lock:
            lease = self._leases.get(step)
            vouches = lease is None or (lease.refresh_id == refresh_id and lease.alive(self._lease_ttl))
            if not vouches or time.monotonic() - self._leases_read > _LEASE_RECHECK:
                self._leases = self._storage.leases.current()
                self._leases_read = time.monotonic()
            return self._leases.get(step)


def _outcome(job: Job, status: LedgerStatus, reason: str, attempts: int = 0) -> Outcome:
    return Outcome(job=job, status=status, attempts=attempts, error=reason)
