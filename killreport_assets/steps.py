"""Running one ESI step of a refresh: record its jobs in the ledger, hand them to the transport, and
wait on the ledger (never on queue lengths) until every entity is finished, with progress, a step
timeout and stall detection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from killreport_assets.jobs import Job
from killreport_assets.registry import EntityKind
from killreport_assets.storage import StepProgress, Storage
from killreport_assets.transport.base import Transport


class Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...


class StepError(RuntimeError):
    """A step cannot finish, and retrying it straight away would only repeat the same wait; the
    message says what the operator should do."""


class StepTimeout(StepError):
    """A step did not finish in time; the message says how far it got and what to do."""


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


def run_step(
    storage: Storage,
    transport: Transport,
    refresh_id: str,
    kind: EntityKind,
    entity_ids: Sequence[int],
    policy: WaitPolicy,
    log: Log,
) -> StepOutcome:
    """Run `kind` jobs for `entity_ids` to completion. A retried step (same refresh id) resubmits only
    the entities its earlier attempt did not finish."""
    started = time.monotonic()
    storage.ledger.add_pending(refresh_id, kind.name, entity_ids)
    pending = storage.ledger.pending_ids(refresh_id, kind.name)
    log.info(
        "%s: %d entities, %d to fetch (%d already finished in this refresh)",
        kind.name,
        len(set(entity_ids)),
        len(pending),
        len(set(entity_ids)) - len(pending),
    )
    transport.submit([Job(refresh_id, kind, i) for i in pending])
    progress = wait_for_step(storage, transport, refresh_id, kind.name, policy, log)
    return StepOutcome(
        progress=progress,
        failures=storage.ledger.failures(refresh_id, kind.name),
        seconds=time.monotonic() - started,
    )


def wait_for_step(
    storage: Storage,
    transport: Transport,
    refresh_id: str,
    step: str,
    policy: WaitPolicy,
    log: Log,
    *,
    stop: threading.Event | None = None,
) -> StepProgress:
    stop = stop or threading.Event()
    started = last_change = last_log = time.monotonic()
    first = storage.ledger.progress(refresh_id, step)
    last_finished = first.finished
    while True:
        transport.check()
        progress = storage.ledger.progress(refresh_id, step)
        now = time.monotonic()
        if progress.finished != last_finished:
            last_finished, last_change = progress.finished, now
        if progress.pending == 0:
            log.info("%s: %s", step, describe(progress, now - started, first.finished))
            return progress
        if now - last_log >= policy.progress_interval:
            log.info("%s: %s", step, describe(progress, now - started, first.finished))
            last_log = now
        if now - started > policy.timeout:
            raise StepTimeout(
                f"{step} timed out after {policy.timeout / 60:.0f} min with {progress.pending} of "
                f"{progress.total} entities still pending. Check that ESI answers (the ESI requests by "
                f"status in this run's logs) and that workers are running, then re-run: entities already "
                f"fetched are served from the cache. Raise the step timeout if the universe outgrew it."
            )
        if now - last_change > policy.stall_timeout:
            raise StepTimeout(
                f"{step} made no progress for {policy.stall_timeout:.0f} s ({progress.pending} of "
                f"{progress.total} pending). Check that workers are running and ESI is reachable, then re-run."
            )
        stop.wait(policy.poll_interval)


def describe(progress: StepProgress, elapsed: float, already: int = 0) -> str:
    """`done/total (pct), rate, ETA` for logs and the CLI."""
    done = progress.finished
    rate = (done - already) / elapsed if elapsed > 0 else 0.0
    remaining = progress.total - done
    eta = f"{remaining / rate:.0f} s" if rate > 0 and remaining else ("0 s" if not remaining else "unknown")
    pct = 100.0 * done / progress.total if progress.total else 100.0
    detail = ", ".join(f"{k} {v}" for k, v in sorted(progress.by_status.items()))
    return f"{done}/{progress.total} ({pct:.1f}%) at {rate:.1f}/s, ETA {eta} [{detail}]"
