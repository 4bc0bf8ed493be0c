"""Embedded transport: the job handler on a bounded thread pool inside this process.

Fetch threads run jobs through the `JobGate` concurrently (the ESI client bounds rate and
concurrency); the batching writer applies their outcomes, so writes are bulk and SQLite sees a
single writer. A job that ESI's pause held too long goes to the back of the pool's queue; a job or
a write that met an unreachable database is tried again a second later (the step's wait decides
how long the database may stay away). After any other error no new job starts, but every outcome already fetched is still written; leaving on an
exception (a failure, a cancellation) also ends the waits of jobs held by ESI pauses at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from killreport_assets.esi import EsiClient, EsiPaused
from killreport_assets.jobs import Job, Outcome
from killreport_assets.jobs.gate import JobGate, Skipped
from killreport_assets.storage import Storage, is_disconnect
from killreport_assets.transport.base import TransportError
from killreport_assets.transport.writer import BatchWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
# Seconds between tries of a job or a write while the database is unreachable.
_DATABASE_RETRY = 1.0


class InlineTransport:
    def __init__(
        self, storage: Storage, client: EsiClient, *, workers: int, lease_ttl: float = 120.0
    ) -> None:
        self._client = client
        self._gate = JobGate(storage, lease_ttl=lease_ttl)
        self._closing = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esi-job")
        self._error: BaseException | None = None
        # Jobs submitted and not yet finished (written, or skipped with nothing to write): at 0 the
        # step's wait ends early instead of sleeping out its poll interval.
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._all_done = threading.Event()
        self._woke = False
        self._writer: BatchWriter[None] = BatchWriter(
            storage,
            written=lambda batch, _counts: self._finished(len(batch)),
            not_written=self._not_written,
            max_batch=250,
        )

    def submit(self, jobs: Sequence[Job]) -> None:
        with self._count_lock:
            self._outstanding += len(jobs)
            self._all_done.clear()
            self._woke = False
        for job in jobs:
            self._pool.submit(self._run, job)

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, or until every submitted job is finished. Only one wait ends early: if the
        ledger still shows work after it, the next waits sleep in full rather than spin."""
        if self._woke:
            time.sleep(seconds)
        else:
            self._woke = self._all_done.wait(seconds)

    def _finished(self, jobs: int) -> None:
        with self._count_lock:
            self._outstanding -= jobs
            if self._outstanding <= 0:
                self._all_done.set()

    def check(self) -> None:
        """Raise the first error that stopped a job or the writer."""
        if self._error is not None:
            raise TransportError(f"embedded workers stopped: {self._error!r}") from self._error

    def close(self, *, interrupt: bool = False) -> None:
        self._closing.set()
        if interrupt:
            self._client.abort()
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._writer.stop(timeout=None)
        finally:
            self._client.resume()

    def __enter__(self) -> InlineTransport:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(interrupt=exc_type is not None)

    def _run(self, job: Job) -> None:
        if self._error is not None or self._closing.is_set():
            return
        try:
            result = self._gate.run(job, self._client)
        except EsiPaused:
            self._again(self._run, job)
            return
        except Exception as exc:
            if is_disconnect(exc):  # the step's wait decides how long the database may be away
                self._again(self._run, job, delay=_DATABASE_RETRY)
                return
            log.exception("job %s %d failed unexpectedly", job.kind, job.entity_id)
            self._error = self._error or exc
            return
        except BaseException as exc:  # a bug or an infrastructure error: stop, the asset reports it
            log.exception("job %s %d failed unexpectedly", job.kind, job.entity_id)
            self._error = self._error or exc
            return
        if isinstance(result, Skipped):
            if result.outcome is None:
                self._finished(1)
            else:
                self._writer.put(result.outcome, None)
            return
        self._writer.put(result, None)

    def _again(self, action: Callable[[T], None], item: T, *, delay: float = 0.0) -> None:
        """Queue `action(item)` again, after `delay` seconds (cut short by `close`)."""

        def run() -> None:
            if not (delay and self._closing.wait(delay)):
                action(item)

        if self._closing.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the pool shut down meanwhile: the step is ending
            self._pool.submit(run)

    def _not_written(self, outcome: Outcome, _tag: None, exc: BaseException) -> None:
        if is_disconnect(exc):
            self._again(lambda o: self._writer.put(o, None), outcome, delay=_DATABASE_RETRY)
            return
        self._error = self._error or exc
