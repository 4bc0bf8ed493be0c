"""The one batching writer both transports use: finished jobs go to `Storage.apply` from a single
thread, in batches of whatever arrived while the previous batch was being written.

Batches grow with load and a lone outcome is written at once (a worker acks only after the commit,
and prefetch caps how many deliveries wait for their ack). A batch that fails is written again one
outcome at a time, so one outcome the database refuses never takes the others' data, ledger rows or
ESI responses with it; only that one is reported not written.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from killreport_assets.jobs import Outcome
from killreport_assets.storage import Storage, WriteCounts

log = logging.getLogger(__name__)

T = TypeVar("T")  # what the transport needs back with each outcome (the worker: its delivery)

_STOP = object()


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
            while item is not _STOP:
                batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
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
            if len(batch) > 1 and not is_disconnect(exc):
                log.warning("writing %d outcomes failed (%s); writing them one by one", len(batch), exc)
                for item in batch:
                    self._write([item])
                return
            log.error("writing %d outcome(s) failed: %s", len(batch), exc)
            for outcome, tag in batch:
                self._not_written(outcome, tag, exc)
            return
        self._written(batch, counts)


def is_disconnect(exc: BaseException) -> bool:
    """The database is unreachable (not: it refused this data)."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
