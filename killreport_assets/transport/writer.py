"""The one batching writer both transports use: finished jobs go to `Storage.apply` from a single
thread, in batches.

A batch is what arrived while the previous one was being written, plus what arrives within
`LINGER` seconds of its first outcome (up to `max_batch`). A transaction costs the same handful of
statements whatever its size: at a paced 100 req/s, where outcomes come one at a time, batches of
one made the writer thread a third of the process's CPU. The wait is short beside a job's own
time, so it keeps few of a worker's deliveries longer from their ack (prefetch caps how many wait).

A batch that fails is written again one outcome at a time, so one outcome the database refuses
never takes the others' data, ledger rows or ESI responses with it. An outcome whose data the
database refuses is recorded failed in the ledger with the database's reason, so no job ever ends
without a ledger row saying what happened to it; only when even that cannot be written (the
database is unreachable) is it reported not written.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from killreport_assets.jobs import LedgerStatus, Outcome
from killreport_assets.storage import Storage, WriteCounts, is_disconnect

log = logging.getLogger(__name__)

T = TypeVar("T")  # what the transport needs back with each outcome (the worker: its delivery)

_STOP = object()
# Seconds the first outcome of a batch waits for others to join it.
LINGER = 0.05


class BatchWriter(Generic[T]):
    def __init__(
        self,
        storage: Storage,
        *,
        written: Callable[[Sequence[tuple[Outcome, T]], WriteCounts], None],
        not_written: Callable[[Outcome, T, BaseException], None],
        max_batch: int = 200,
    ) -> None:
        self._storage = storage
        self._written = written
        self._not_written = not_written
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._thread.start()

    def put(self, outcome: Outcome, tag: T) -> None:
        self._queue.put((outcome, tag))

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write everything put so far, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = []
            until = time.monotonic() + LINGER
            while item is not _STOP:
                batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            if item is _STOP:
                return

    def _write(self, batch: list[tuple[Outcome, T]]) -> None:
        try:
            counts = self._storage.apply([outcome for outcome, _ in batch])
        except Exception as exc:
            if is_disconnect(exc):
                log.error("writing %d outcome(s) failed: %s", len(batch), exc)
                for outcome, tag in batch:
                    self._not_written(outcome, tag, exc)
            elif len(batch) > 1:
                log.warning("writing %d outcomes failed (%s); writing them one by one", len(batch), exc)
                for item in batch:
                    self._write([item])
            else:
                self._refused(*batch[0], exc)
            return
        self._written(batch, counts)

    def _refused(self, outcome: Outcome, tag: T, exc: Exception) -> None:
        """The database refused this outcome's data: record the entity failed, with the reason."""
        job = outcome.job
        reason = f"the database refused {job.kind} {job.entity_id}: {first_line(exc)}"
        log.error("%s; recording it as failed", reason)
        failed = dataclasses.replace(
            outcome, status=LedgerStatus.FAILED, value=None, response=None, error=reason[:2000]
        )
        try:
            counts = self._storage.apply([failed])
        except Exception as again:
            log.error("cannot record %s %d as failed either: %s", job.kind, job.entity_id, again)
            self._not_written(outcome, tag, again)
            return
        self._written([(failed, tag)], counts)


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
