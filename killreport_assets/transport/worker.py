"""`killreport worker`: consume the job queues, run the job handlers, ack only what is committed.

Threads, and why:

* The main thread owns the pika `BlockingConnection` and nothing else touches it: it receives
  deliveries and hands them to a pool, and it settles them (ack, nack, republish for a retry).
  Other threads ask it to settle through `add_callback_threadsafe`, the one thread-safe pika call.
  It never blocks on ESI or the database, so heartbeats are always answered.
* Job threads run `handle` (the ESI request). Enrichment has its own pool and its own consumer
  prefetch: quorum queues have no priorities on RabbitMQ 3.10, so enrichment is served ahead of the
  nightly bulk by reserved capacity: its jobs never wait behind thousands of bulk jobs.
* One writer thread applies outcomes in small batches, one transaction each (data, ledger, ESI
  cache), then has the main thread ack each message of the batch: a crash before the commit means
  a redelivery, a crash after it a harmless repeat of idempotent upserts.

Failures: a transient one (ESI unavailable after the client's own retries, a database error, a bug)
is republished to the lane's retry queue with its attempt number, and the original acked; the
attempt past `max_attempts`, or a permanent ESI error, is recorded as failed in the ledger with its
last error. A message that is no job is dead-lettered and logged with its body. A message that
keeps killing workers is recorded failed on its last delivery before the broker's delivery limit.

A lost connection is reopened with capped exponential backoff and jitter. Deliveries carry the
connection generation they came from: settling one from an earlier connection is skipped (the
broker has already requeued it; acking its tag on the new channel would close that channel).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pika
import pika.exceptions
import sqlalchemy as sa
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from killreport_assets.esi import EsiClient
from killreport_assets.jobs.handlers import handle
from killreport_assets.jobs.model import Job, JobDecodeError, LedgerStatus, Outcome
from killreport_assets.settings import redact_url
from killreport_assets.storage import Storage
from killreport_assets.storage import tables as t
from killreport_assets.storage.cache import DatabaseCache
from killreport_assets.transport.amqp import close_quietly, config_error, parameters
from killreport_assets.transport.publisher import PERSISTENT_JSON
from killreport_assets.transport.topology import (
    ATTEMPT_HEADER,
    DELIVERY_COUNT_HEADER,
    DELIVERY_LIMIT,
    ESI_ATTEMPTS_HEADER,
    Lane,
    Topology,
)

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
_BODY_EXCERPT = 500
_REFRESH_ID_LENGTH = t.refresh_ledger.c.refresh_id.type.length
_STOP = object()


class Action(Enum):
    ACK = "ack"
    RETRY = "retry"  # republish to the retry queue, then ack
    DEAD = "dead"  # nack without requeue: the dead-letter queue


@dataclass(frozen=True)
class WorkerOptions:
    lanes: Sequence[Lane]
    concurrency: int
    max_attempts: int
    summary_interval: float = 30.0
    drain_timeout: float = 30.0
    max_batch: int = 200

    @property
    def bulk_threads(self) -> int:
        return self.concurrency if any(not lane.enrichment for lane in self.lanes) else 0

    @property
    def enrichment_threads(self) -> int:
        """Reserved for enrichment: all of them when it is the only lane, else a quarter (at least 1)."""
        if not any(lane.enrichment for lane in self.lanes):
            return 0
        if not self.bulk_threads:
            return self.concurrency
        return max(1, self.concurrency // 4)


@dataclass(frozen=True)
class Delivery:
    """One received message and where it must be settled."""

    generation: int
    connection: BlockingConnection
    channel: BlockingChannel
    tag: int
    lane: Lane
    body: bytes
    attempt: int  # queue-level attempt, from 1
    esi_attempts: int  # ESI requests made by the earlier attempts
    redeliveries: int  # earlier deliveries of this very message that were never settled


class Worker:
    def __init__(
        self,
        url: str,
        topology: Topology,
        storage: Storage,
        cache: DatabaseCache,
        client: EsiClient,
        options: WorkerOptions,
    ) -> None:
        self._url = url
        self._params = parameters(url, "worker")
        self._topology = topology
        self._client = client
        self._options = options
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._generation = 0
        self._in_flight = 0  # main thread only: unsettled deliveries of the current connection
        self._channel: BlockingChannel | None = None
        self._retry_channel: BlockingChannel | None = None
        self._consumer_tags: list[str] = []
        self._cancelled_by_broker = False
        self._connected_once = False
        self._stats = _Stats()
        self._pools = {
            False: ThreadPoolExecutor(max(1, options.bulk_threads), thread_name_prefix="job"),
            True: ThreadPoolExecutor(max(1, options.enrichment_threads), thread_name_prefix="enrichment-job"),
        }
        self._writer = _Writer(storage, cache, options.max_batch, self._written, self._not_written)

    # -- lifecycle ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop`; reconnect after outages. Raises `BrokerConfigError` on a configuration
        error (retrying cannot fix those)."""
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    connection = self._connect()
                except (pika.exceptions.AMQPError, socket.gaierror) as exc:
                    error = config_error(exc, self._url)
                    if error is not None and not (isinstance(exc, socket.gaierror) and self._connected_once):
                        raise error from exc
                    delay = self._back_off(delay, exc)
                    continue
                delay = 1.0
                try:
                    self._serve(connection)
                except (pika.exceptions.AMQPError, _Resubscribe) as exc:
                    delay = self._back_off(delay, exc)
                finally:
                    close_quietly(connection)
        finally:
            self._writer.stop()
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Stop taking jobs and finish the in-flight ones (returned to the queue after the drain timeout)."""
        self._stopping.set()

    def abandon(self) -> None:
        """Stop now: unfinished jobs go back to their queues."""
        self._abandon.set()
        self._stopping.set()

    def _back_off(self, delay: float, exc: BaseException) -> float:
        if self._stopping.is_set():
            return delay
        wait = delay * random.uniform(0.5, 1.5)
        log.warning("RabbitMQ at %s: %r; reconnecting in %.1f s", redact_url(self._url), exc, wait)
        self._stopping.wait(wait)
        return min(delay * 2, MAX_BACKOFF)

    def _connect(self) -> BlockingConnection:
        """Open a connection, declare the topology, and start the consumers."""
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            self._topology.declare(channel)
            retry_channel = connection.channel()
            retry_channel.confirm_delivery()
            channel.add_on_cancel_callback(self._on_cancelled)
            self._generation += 1
            self._in_flight = 0
            self._channel, self._retry_channel = channel, retry_channel
            self._cancelled_by_broker = False
            self._consumer_tags = []
            for lane in self._options.lanes:
                # Per-consumer prefetch (RabbitMQ applies basic.qos to the consumers created after it).
                prefetch = self._options.enrichment_threads if lane.enrichment else self._options.concurrency
                channel.basic_qos(prefetch_count=prefetch)
                tag = channel.basic_consume(
                    lane.queue, functools.partial(self._on_message, self._generation, connection, lane)
                )
                self._consumer_tags.append(tag)
        except BaseException:
            close_quietly(connection)
            raise
        self._connected_once = True
        log.info(
            "consuming %s on %s (%d nightly + %d enrichment job threads)",
            ", ".join(lane.queue for lane in self._options.lanes),
            redact_url(self._url),
            self._options.bulk_threads,
            self._options.enrichment_threads,
        )
        return connection

    def _serve(self, connection: BlockingConnection) -> None:
        while not self._stopping.is_set():
            connection.process_data_events(time_limit=1.0)
            if self._cancelled_by_broker:
                raise _Resubscribe("RabbitMQ cancelled a consumer (queue deleted or moved)")
            self._stats.maybe_log(self._options.summary_interval, self._in_flight)
        self._drain(connection)

    def _drain(self, connection: BlockingConnection) -> None:
        """Cancel the consumers (undispatched prefetched messages go back at once), let the in-flight
        jobs finish and be acked, and return whatever is left after the drain timeout."""
        assert self._channel is not None
        for tag in self._consumer_tags:
            self._channel.basic_cancel(tag)
        if self._in_flight:
            log.info(
                "stopping: finishing %d in-flight job(s) (signal again to return them now)", self._in_flight
            )
        deadline = time.monotonic() + self._options.drain_timeout
        while self._in_flight > 0 and time.monotonic() < deadline and not self._abandon.is_set():
            connection.process_data_events(time_limit=0.2)
        if self._in_flight:
            log.warning("returning %d unfinished job(s) to their queues", self._in_flight)
        self._stats.maybe_log(0.0, self._in_flight)

    # -- deliveries (main thread) ------------------------------------------------------------------

    def _on_message(
        self,
        generation: int,
        connection: BlockingConnection,
        lane: Lane,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self._in_flight += 1
        headers = props.headers or {}
        delivery = Delivery(
            generation=generation,
            connection=connection,
            channel=channel,
            tag=method.delivery_tag,
            lane=lane,
            body=body,
            attempt=_int_header(headers, ATTEMPT_HEADER, 1),
            esi_attempts=_int_header(headers, ESI_ATTEMPTS_HEADER, 0),
            redeliveries=_int_header(headers, DELIVERY_COUNT_HEADER, 0),
        )
        try:
            job = _decode(body)
        except JobDecodeError as exc:
            log.error(
                "dead-lettering a message from %s to %s: %s; body: %r",
                lane.queue,
                lane.dead_queue,
                exc,
                body[:_BODY_EXCERPT],
            )
            self._stats.add("dead-lettered")
            self._settle_now(delivery, Action.DEAD)
            return
        if delivery.redeliveries >= DELIVERY_LIMIT:
            log.error(
                "%s %d (refresh %s) was delivered %d times without an ack: recording it as failed",
                job.kind,
                job.entity_id,
                job.refresh_id,
                delivery.redeliveries + 1,
            )
            self._stats.add("quarantined")
            error = (
                f"delivered {delivery.redeliveries + 1} times without being acknowledged: it crashed or "
                "stalled workers, or they lost the broker while handling it; not retried"
            )
            self._writer.put(
                Outcome(job=job, status=LedgerStatus.FAILED, attempts=delivery.esi_attempts, error=error),
                delivery,
            )
            return
        self._pools[lane.enrichment].submit(self._work, delivery, job)

    def _on_cancelled(self, _frame: Any) -> None:
        self._cancelled_by_broker = True

    # -- jobs (job threads) ------------------------------------------------------------------------

    def _work(self, delivery: Delivery, job: Job) -> None:
        started = time.monotonic()
        try:
            outcome = handle(job, self._client)
            transient = _transient(outcome)
        except Exception as exc:  # a bug or the database (the HTTP cache): retried like an ESI outage
            log.exception("%s %d failed unexpectedly", job.kind, job.entity_id)
            outcome = Outcome(
                job=job, status=LedgerStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            transient = True
        outcome = dataclasses.replace(outcome, attempts=delivery.esi_attempts + outcome.attempts)
        log.debug(
            "%s %d (refresh %s, attempt %d%s): %s%s in %.0f ms",
            job.kind,
            job.entity_id,
            job.refresh_id,
            delivery.attempt,
            f", redelivery {delivery.redeliveries}" if delivery.redeliveries else "",
            outcome.status,
            f" (HTTP {outcome.http_status})" if outcome.http_status else "",
            (time.monotonic() - started) * 1000,
        )
        if transient and delivery.attempt < self._options.max_attempts:
            self._stats.add("retried")
            self._settle(delivery, Action.RETRY, outcome.attempts)
            return
        if transient:
            outcome = dataclasses.replace(
                outcome, error=f"{outcome.error} (gave up after {delivery.attempt} attempts)"
            )
        self._writer.put(outcome, delivery)

    # -- the writer's results (writer thread) --------------------------------------------------------

    def _written(self, batch: Sequence[tuple[Outcome, Delivery]]) -> None:
        for outcome, delivery in batch:
            self._stats.add(outcome.status.value)
            self._settle(delivery, Action.ACK)

    def _not_written(self, outcome: Outcome, delivery: Delivery, exc: BaseException) -> None:
        if delivery.attempt < self._options.max_attempts and delivery.redeliveries < DELIVERY_LIMIT:
            self._stats.add("retried")
            self._settle(delivery, Action.RETRY, outcome.attempts)
            return
        log.error(
            "cannot record %s %d (refresh %s) after %d attempts (%s): dead-lettering it to %s",
            outcome.job.kind,
            outcome.job.entity_id,
            outcome.job.refresh_id,
            delivery.attempt,
            exc,
            delivery.lane.dead_queue,
        )
        self._stats.add("dead-lettered")
        self._settle(delivery, Action.DEAD)

    # -- settling ----------------------------------------------------------------------------------

    def _settle(self, delivery: Delivery, action: Action, esi_attempts: int = 0) -> None:
        """From any thread: have the connection thread settle `delivery`."""
        try:
            delivery.connection.add_callback_threadsafe(
                functools.partial(self._settle_now, delivery, action, esi_attempts)
            )
        except pika.exceptions.ConnectionWrongStateError:
            log.debug("connection closed before settling delivery %d: RabbitMQ redelivers it", delivery.tag)

    def _settle_now(self, delivery: Delivery, action: Action, esi_attempts: int = 0) -> None:
        if delivery.generation != self._generation or not delivery.channel.is_open:
            log.debug("skipping delivery %d of an earlier connection (already requeued)", delivery.tag)
            return
        self._in_flight -= 1
        if action is Action.ACK:
            delivery.channel.basic_ack(delivery.tag)
        elif action is Action.DEAD:
            delivery.channel.basic_nack(delivery.tag, requeue=False)
        else:
            self._republish(delivery, esi_attempts)

    def _republish(self, delivery: Delivery, esi_attempts: int) -> None:
        """Copy to the retry queue (confirmed), then ack; if the broker refuses the copy, requeue."""
        assert self._retry_channel is not None
        headers = {ATTEMPT_HEADER: delivery.attempt + 1, ESI_ATTEMPTS_HEADER: esi_attempts}
        try:
            self._retry_channel.basic_publish(
                "",
                delivery.lane.retry_queue,
                delivery.body,
                _with_headers(headers),
                mandatory=True,
            )
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as exc:
            log.warning("cannot schedule a retry on %s (%r); requeueing", delivery.lane.retry_queue, exc)
            delivery.channel.basic_nack(delivery.tag, requeue=True)
            return
        delivery.channel.basic_ack(delivery.tag)


class _Resubscribe(Exception):
    """The broker cancelled a consumer: reconnect to subscribe again."""


Written = Callable[[Sequence[tuple[Outcome, Delivery]]], None]
NotWritten = Callable[[Outcome, Delivery, BaseException], None]


class _Writer:
    """Applies outcomes on one thread, in batches of whatever arrived while the previous batch was
    being written: batches grow with load, and a lone outcome is written (and acked) at once, which
    matters because prefetch caps how many messages wait for their ack."""

    def __init__(
        self,
        storage: Storage,
        cache: DatabaseCache,
        max_batch: int,
        written: Written,
        not_written: NotWritten,
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._max_batch = max_batch
        self._written = written
        self._not_written = not_written
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._thread.start()

    def put(self, outcome: Outcome, delivery: Delivery) -> None:
        self._queue.put((outcome, delivery))

    def stop(self, timeout: float = 30.0) -> None:
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

    def _write(self, batch: list[tuple[Outcome, Delivery]]) -> None:
        try:
            self._storage.apply([outcome for outcome, _ in batch], flush=self._cache.flush)
        except Exception as exc:
            if len(batch) > 1 and not _is_disconnect(exc):
                log.warning("writing %d outcomes failed (%s); writing them one by one", len(batch), exc)
                for item in batch:
                    self._write([item])
                return
            log.error("writing %d outcome(s) failed: %s", len(batch), exc)
            for outcome, delivery in batch:
                self._not_written(outcome, delivery, exc)
            return
        self._written(batch)


class _Stats:
    """Counts for the periodic INFO summary; updated from every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._since = time.monotonic()

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def maybe_log(self, interval: float, in_flight: int) -> None:
        now = time.monotonic()
        if now - self._since < interval:
            return
        with self._lock:
            counts, self._counts = self._counts, Counter()
        elapsed, self._since = now - self._since, now
        jobs = sum(n for name, n in counts.items() if name in _FINISHED)
        if not counts and not in_flight:
            return
        detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        log.info(
            "%d job(s) finished in %.0f s (%.1f/s)%s; %d in flight",
            jobs,
            elapsed,
            jobs / elapsed if elapsed else 0.0,
            f": {detail}" if detail else "",
            in_flight,
        )


_FINISHED = frozenset(status.value for status in LedgerStatus.finished())


def _transient(outcome: Outcome) -> bool:
    """Whether a FAILED outcome may succeed later: ESI unavailable (5xx, timeouts, no connection,
    throttled) as opposed to a 400 or an invalid body, which fail the same way every time."""
    if outcome.status is not LedgerStatus.FAILED:
        return False
    status = outcome.http_status
    return status is None or status >= 500 or status in (420, 429)


def _decode(body: bytes) -> Job:
    job = Job.decode(body)
    if len(job.refresh_id) > _REFRESH_ID_LENGTH:
        raise JobDecodeError(
            f"undecodable job message: refresh_id longer than {_REFRESH_ID_LENGTH} characters"
        )
    return job


def _int_header(headers: dict[str, Any], name: str, default: int) -> int:
    value = headers.get(name, default)
    return value if isinstance(value, int) and value >= 0 else default


def _with_headers(headers: dict[str, Any]) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=PERSISTENT_JSON.delivery_mode,
        content_type=PERSISTENT_JSON.content_type,
        headers=headers,
    )


def _is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
