"""Running one ESI step of a refresh: take the step's lease, record its jobs in the ledger, hand them
to the transport, and wait on the ledger (never on queue lengths) until every entity is finished,
with progress, a step timeout and stall detection that knows an ESI pause from a stall. However the
step ends, its lease is given back, and jobs it leaves unfinished are withdrawn so no worker spends
ESI requests on them.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from killreport_assets.jobs import Job
from killreport_assets.registry import EntityKind
from killreport_assets.storage import StepProgress, Storage, is_disconnect
from killreport_assets.storage.sql import utcnow
from killreport_assets.transport.base import Transport


class Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...


# Seconds without a heartbeat after which a step's holder looks dead rather than busy (steps renew
# every poll, a second by default); its lease still has to lapse before it is taken over.
_SILENT_HOLDER = 3.0


class StepError(RuntimeError):
    """A step cannot finish, and retrying it straight away would only repeat the same wait; the
    message says what the operator should do."""


class StepTimeout(StepError):
    """A step did not finish in time; the message says how far it got and what to do."""


class StepBusy(StepError):
    """Another live refresh runs this step against the same database."""


@dataclass(frozen=True)
class StepOutcome:
    progress: StepProgress
    failures: list[tuple[int, str | None]]
    seconds: float

    @property
    def failed_ratio(self) -> float:
        return self.progress.failed / self.progress.total if self.progress.total else 0.0


@dataclass(frozen=True)
class WaitPolicy:
    timeout: float
    stall_timeout: float
    progress_interval: float
    poll_interval: float = 1.0
    lease_ttl: float = 120.0  # see RefreshSettings.lease_ttl; steps renew their lease every poll


def run_step(
    storage: Storage,
    transport: Transport,
    refresh_id: str,
    kind: EntityKind,
    entity_ids: Sequence[int],
    policy: WaitPolicy,
    log: Log,
    *,
    holder: str | None = None,
) -> StepOutcome:
    """Run `kind` jobs for `entity_ids` to completion. A retried step (same refresh id) resubmits only
    the entities its earlier attempt did not finish. `holder` names this run in the messages of a
    refresh that finds the step taken."""
    started = time.monotonic()
    step = kind.name
    with _leased(
        storage, refresh_id, step, holder or f"pid {os.getpid()} on {socket.gethostname()}", policy, log
    ):
        storage.ledger.add_pending(refresh_id, step, entity_ids)
        pending = storage.ledger.pending_ids(refresh_id, step)
        log.info(
            "%s: %d entities, %d to fetch (%d already finished in this refresh)",
            step,
            len(set(entity_ids)),
            len(pending),
            len(set(entity_ids)) - len(pending),
        )
        transport.submit([Job(refresh_id, kind, i) for i in pending])
        progress = wait_for_step(storage, transport, refresh_id, step, policy, log)
        return StepOutcome(
            progress=progress,
            failures=storage.ledger.failures(refresh_id, step),
            seconds=time.monotonic() - started,
        )


@contextmanager
def _leased(
    storage: Storage, refresh_id: str, step: str, holder: str, policy: WaitPolicy, log: Log
) -> Iterator[None]:
    """Hold the step's lease around the body; however the body ends, withdraw what it left pending
    and give the lease back."""
    ttl = policy.lease_ttl
    _take_lease(storage, refresh_id, step, holder, ttl, log)
    try:
        yield
    except BaseException as exc:
        _withdraw(storage, refresh_id, step, exc, ttl, log)
        raise
    finally:
        _quietly(log, "give back the lease of", step, ttl, lambda: storage.leases.release(step, refresh_id))


def _take_lease(storage: Storage, refresh_id: str, step: str, holder: str, ttl: float, log: Log) -> None:
    """Take the step, or fail at once if a live refresh holds it. A holder that stopped renewing
    (its process was killed) is waited for until its lease lapses, then taken over."""
    lease, dead = storage.leases.acquire(step, refresh_id, holder, ttl)
    silent = (utcnow() - lease.heartbeat_at).total_seconds()
    if lease.refresh_id != refresh_id and silent >= _SILENT_HOLDER:
        wait = max(0.0, ttl - silent) + 0.5
        log.warning(
            "%s: held by %s, silent for %.0f s (its run probably died); waiting %.0f s for its lease to lapse",
            step,
            lease.describe(),
            silent,
            wait,
        )
        time.sleep(wait)
        lease, dead = storage.leases.acquire(step, refresh_id, holder, ttl)
    if lease.refresh_id != refresh_id:
        raise StepBusy(
            f"{step} is already being refreshed by {lease.describe()}. Two refreshes never fetch the same "
            f"step at once: wait for that run to finish (or cancel it in the Dagster UI) and re-run. If its "
            f"process died, its lease lapses {ttl:.0f} s after the last heartbeat (KILLREPORT_STEP_LEASE_SECONDS)."
        )
    if dead is not None:
        reason = (
            f"refresh {dead.refresh_id} stopped renewing the {step} step at {dead.heartbeat_at:%H:%M:%S} UTC "
            f"(its run died); refresh {refresh_id} took the step over"
        )
        withdrawn = storage.ledger.withdraw(dead.refresh_id, step, reason)
        log.warning(
            "%s: took over from %s; withdrew its %d unfinished job(s)", step, dead.describe(), withdrawn
        )


def _withdraw(storage: Storage, refresh_id: str, step: str, exc: BaseException, ttl: float, log: Log) -> None:
    cause = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    reason = f"the {step} step of refresh {refresh_id} ended before this entity was fetched: {cause}"
    count = 0

    def withdraw() -> None:
        nonlocal count
        count = storage.ledger.withdraw(refresh_id, step, reason)

    _quietly(log, "withdraw the unfinished jobs of", step, ttl, withdraw)
    if count:
        log.warning("%s: withdrew %d unfinished job(s); workers skip them", step, count)


def _quietly(log: Log, what: str, step: str, ttl: float, action: Callable[[], None]) -> None:
    """Clean-up that must not hide the error that caused it (the database may be what failed)."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - reported, and the lease lapses on its own
        log.warning("%s: could not %s the step (%s); it lapses within %.0f s", step, what, exc, ttl)


def wait_for_step(
    storage: Storage,
    transport: Transport,
    refresh_id: str,
    step: str,
    policy: WaitPolicy,
    log: Log,
) -> StepProgress:
    started = last_change = last_log = time.monotonic()
    first = storage.ledger.progress(refresh_id, step)
    last_changed_at: dt.datetime | None = None
    pauses = PauseWatch(storage, step, log)
    unreachable_since: float | None = None
    while True:
        transport.check()
        report = time.monotonic() - last_log >= policy.progress_interval
        try:
            # Each poll costs a few index lookups at any universe size; the full count (a scan of the
            # step's rows) only when it is logged, and at the end.
            renewed = storage.leases.heartbeat(step, refresh_id)
            pending, changed_at = storage.ledger.pulse(refresh_id, step)
            paused = pauses.poll()
            progress = storage.ledger.progress(refresh_id, step) if report or not pending else None
        except Exception as exc:
            # A database restart (a package upgrade) is ridden out while the lease would still hold.
            if not is_disconnect(exc):
                raise
            now = time.monotonic()
            if unreachable_since is None:
                unreachable_since = now
                log.warning(
                    "%s: the database is unreachable (%s); waiting for it", step, str(exc).splitlines()[0]
                )
            if now - unreachable_since > policy.lease_ttl / 2:
                raise
            time.sleep(policy.poll_interval)
            continue
        if unreachable_since is not None:
            log.info(
                "%s: the database answers again after %.0f s", step, time.monotonic() - unreachable_since
            )
            last_change, unreachable_since = time.monotonic(), None
        if not renewed:
            raise StepError(
                f"{step}: this refresh lost the step to another one after failing to renew it for "
                f"{policy.lease_ttl:.0f} s (was the database unreachable?); re-run when the other refresh is done."
            )
        now = time.monotonic()
        if changed_at != last_changed_at or paused:  # a paused step is not a stalled one
            last_changed_at, last_change = changed_at, now
        if progress is not None:
            log.info("%s: %s", step, describe(progress, now - started, first.finished))
            last_log = now
            if not pending:
                return progress
        if now - started > policy.timeout:
            progress = storage.ledger.progress(refresh_id, step)
            raise StepTimeout(
                f"{step} timed out after {policy.timeout / 60:.0f} min with {progress.pending} of "
                f"{progress.total} entities still pending. Check that ESI answers (the ESI requests by "
                f"status in this run's logs) and that workers are running, then re-run: entities already "
                f"fetched are served from the cache. Raise the step timeout if the universe outgrew it."
            )
        if now - last_change > policy.stall_timeout:
            progress = storage.ledger.progress(refresh_id, step)
            raise StepTimeout(
                f"{step} made no progress for {policy.stall_timeout:.0f} s ({progress.pending} of "
                f"{progress.total} pending). Check that workers are running and ESI is reachable, then re-run."
            )
        transport.wait(policy.poll_interval)


class PauseWatch:
    """Puts every ESI pause any process reports (`esi_pauses`: this one's governor, or a worker's)
    into the step's log, once when it starts and once when it ends, with why and for how long."""

    WHY = {
        "error_limit_hold": "ESI's error budget is down to the reserve; new requests wait for its window to reset",
        "error_limited": "ESI answered 420 (error limit reached); every request waits for the window to reset",
        "rate_limited": "ESI answered 429 (rate limited); the route group's requests wait for Retry-After",
        "downtime": "ESI is in its daily downtime; requests wait while a probe checks every 30 s",
        "outage": "most ESI answers fail; requests wait while one probe at a time checks",
    }

    def __init__(self, storage: Storage, step: str, log: Log) -> None:
        self._storage, self._step, self._log = storage, step, log
        self._open: dict[tuple[str, str], float] = {}  # (source, reason) -> when it was first seen

    def poll(self) -> bool:
        """Log pauses that began or ended since the last poll; whether one is on now."""
        active = self._storage.pauses.active()
        now, wall = time.monotonic(), dt.datetime.now(dt.UTC)
        for source, reason, until in active:
            if (source, reason) not in self._open:
                self._open[(source, reason)] = now
                self._log.warning(
                    "%s: ESI paused (%s) by %s until %s UTC, %.0f s: %s",
                    self._step,
                    reason,
                    source,
                    f"{until:%H:%M:%S}",
                    (until - wall).total_seconds(),
                    self.WHY.get(reason, "requests wait"),
                )
        for key in set(self._open) - {(source, reason) for source, reason, _ in active}:
            began = self._open.pop(key)
            self._log.info(
                "%s: ESI pause (%s) by %s over after %.0f s", self._step, key[1], key[0], now - began
            )
        return bool(active)


def describe(progress: StepProgress, elapsed: float, already: int = 0) -> str:
    """`done/total (pct), rate, ETA` for logs and the CLI."""
    done = progress.finished
    rate = (done - already) / elapsed if elapsed > 0 else 0.0
    remaining = progress.total - done
    eta = f"{remaining / rate:.0f} s" if rate > 0 and remaining else ("0 s" if not remaining else "unknown")
    pct = 100.0 * done / progress.total if progress.total else 100.0
    detail = ", ".join(f"{k} {v}" for k, v in sorted(progress.by_status.items()))
    return f"{done}/{progress.total} ({pct:.1f}%) at {rate:.1f}/s, ETA {eta} [{detail}]"
