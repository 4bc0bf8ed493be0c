"""Embedded transport: the job handlers on a bounded thread pool inside this process.

Fetch threads run `handle` concurrently (the ESI client bounds rate and concurrency); one writer
thread applies their outcomes to the database in batches, so writes are bulk and SQLite sees a
single writer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from killreport_assets.esi import EsiClient
from killreport_assets.jobs.handlers import cache_key, handle
from killreport_assets.jobs.model import Job, Outcome
from killreport_assets.storage import Storage, WriteCounts
from killreport_assets.storage.cache import DatabaseCache

log = logging.getLogger(__name__)

_STOP = object()


class TransportError(RuntimeError):
    """The transport cannot make progress; the message says why."""


class InlineTransport:
    def __init__(
        self,
        storage: Storage,
        client: EsiClient,
        cache: DatabaseCache | None,
        *,
        workers: int,
        batch_size: int = 250,
        flush_interval: float = 0.5,
    ) -> None:
        self._storage = storage
        self._client = client
        self._cache = cache
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esi-job")
        self._outcomes: queue.Queue = queue.Queue()
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._error: BaseException | None = None
        self.counts = WriteCounts()
        self._writer = threading.Thread(target=self._write_loop, name="esi-writer", daemon=True)
        self._writer.start()

    def submit(self, jobs: Sequence[Job]) -> None:
        if self._cache is not None:
            self._cache.preload(cache_key(job, self._client) for job in jobs)
        for job in jobs:
            self._pool.submit(self._run, job)

    def check(self) -> None:
        """Raise the first error that stopped a worker or the writer."""
        if self._error is not None:
            raise TransportError(f"embedded workers stopped: {self._error!r}") from self._error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._outcomes.put(_STOP)
        self._writer.join()
        if self._cache is not None:
            self._cache.forget_loaded()

    def __enter__(self) -> InlineTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, job: Job) -> None:
        if self._error is not None:
            return
        try:
            self._outcomes.put(handle(job, self._client))
        except BaseException as exc:  # a bug or an infrastructure error: stop, the asset reports it
            log.exception("job %s failed unexpectedly", job)
            self._error = self._error or exc

    def _write_loop(self) -> None:
        batch: list[Outcome] = []
        while True:
            try:
                item = self._outcomes.get(timeout=self._flush_interval)
            except queue.Empty:
                item = None
            if item is not None and item is not _STOP:
                batch.append(item)
                if len(batch) < self._batch_size:
                    continue
            if batch:
                self._flush(batch)
                batch = []
            if item is _STOP:
                return

    def _flush(self, batch: list[Outcome]) -> None:
        if self._error is not None:
            return
        try:
            flush = self._cache.flush if self._cache is not None else None
            self.counts.add(self._storage.apply(batch, flush=flush))
        except BaseException as exc:
            log.exception("writing %d outcomes failed", len(batch))
            self._error = self._error or exc
