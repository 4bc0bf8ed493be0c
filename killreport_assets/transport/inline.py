"""Embedded transport: the job handler on a bounded thread pool inside this process.

Fetch threads run `handle` concurrently (the ESI client bounds rate and concurrency); the batching
writer applies their outcomes, so writes are bulk and SQLite sees a single writer. After an error
no new job starts, but every outcome already fetched is still written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from killreport_assets.esi import EsiClient
from killreport_assets.jobs import Job, Outcome
from killreport_assets.jobs.handlers import handle
from killreport_assets.storage import Storage
from killreport_assets.transport.base import TransportError
from killreport_assets.transport.writer import BatchWriter

log = logging.getLogger(__name__)


class InlineTransport:
    def __init__(self, storage: Storage, client: EsiClient, *, workers: int) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="esi-job")
        self._error: BaseException | None = None
        self._writer: BatchWriter[None] = BatchWriter(
            storage, written=lambda _batch, _counts: None, not_written=self._not_written, max_batch=250
        )

    def submit(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._pool.submit(self._run, job)

    def check(self) -> None:
        """Raise the first error that stopped a job or the writer."""
        if self._error is not None:
            raise TransportError(f"embedded workers stopped: {self._error!r}") from self._error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._writer.stop(timeout=None)

    def __enter__(self) -> InlineTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, job: Job) -> None:
        if self._error is not None:
            return
        try:
            self._writer.put(handle(job, self._client), None)
        except BaseException as exc:  # a bug or an infrastructure error: stop, the asset reports it
            log.exception("job %s %d failed unexpectedly", job.kind, job.entity_id)
            self._error = self._error or exc

    def _not_written(self, _outcome: Outcome, _tag: None, exc: BaseException) -> None:
        self._error = self._error or exc
