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

Before any ESI request the `JobGate` asks the ledger whether the job is still live: jobs of a
refresh whose step ended or whose run died are skipped (acked, the ledger says why), duplicates of
finished ones too, and no entity spends more than its per-refresh request budget.

Failures: a transient one (ESI unavailable after the client's own retries, a bug) is republished to
the lane's retry queue with its attempt number, and the original acked; the attempt past
`max_attempts`, or a permanent ESI error, is recorded as failed in the ledger with its last error.
A job that sent nothing (ESI paused by the circuit breaker past the hold time, the database
unreachable) is handed back as the same attempt. While the database is unreachable the worker stops
consuming (its prefetched jobs go back) and resumes once a probe connects, spending no attempts.
A message that is no job is dead-lettered and logged with its body. A message that keeps killing
workers is recorded failed on its last delivery before the broker's delivery limit.

A lost connection is reopened with capped exponential backoff and jitter. Deliveries carry the
connection generation they came from: settling one from an earlier connection is skipped (the
broker has already requeued it; acking its tag on the new channel would close that channel).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from killreport_assets.envvars import redact_url
from killreport_assets.esi import EsiClient, EsiPaused
from killreport_assets.jobs import Job, JobDecodeError, LedgerStatus, Outcome
from killreport_assets.jobs.gate import JobGate, Skipped
from killreport_assets.storage import Storage, WriteCounts, is_disconnect
from killreport_assets.transport.amqp import close_quietly, config_error, parameters
from killreport_assets.transport.deliveries import (
    Action,
    Delivery,
    WorkerOptions,
    WorkerStats,
    is_transient,
)
from killreport_assets.transport.topology import DELIVERY_LIMIT, Lane, Topology
from killreport_assets.transport.writer import BatchWriter, first_line

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
_BODY_EXCERPT = 500
# Seconds between database probes while it is unreachable (doubling up to the last).
_DATABASE_PROBES = (1.0, 2.0, 4.0, 8.0, 15.0)


class Worker:
    def __init__(
        self,
        url: str,
        topology: Topology,
        storage: Storage,
        client: EsiClient,
        options: WorkerOptions,
    ) -> None:
        self._url = url
        self._params = parameters(url, "worker")
        self._topology = topology
        self._storage = storage
        self._client = client
        self._gate = JobGate(storage, lease_ttl=options.lease_ttl)
        self._database_down = threading.Event()
        self._database_lock = threading.Lock()
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
        self._stats = WorkerStats()
        self._pools = {
            False: ThreadPoolExecutor(max(1, options.bulk_threads), thread_name_prefix="job"),
            True: ThreadPoolExecutor(max(1, options.enrichment_threads), thread_name_prefix="enrichment-job"),
        }
        self._writer: BatchWriter[Delivery] = BatchWriter(
            storage, written=self._written, not_written=self._not_written, max_batch=options.max_batch
        )

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
            if not self._database_down.is_set():
                self._consume(connection)
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

    def _consume(self, connection: BlockingConnection) -> None:
        assert self._channel is not None
        for lane in self._options.lanes:
            # Per-consumer prefetch (RabbitMQ applies basic.qos to the consumers created after it).
            prefetch = self._options.enrichment_threads if lane.enrichment else self._options.concurrency
            self._channel.basic_qos(prefetch_count=prefetch)
            tag = self._channel.basic_consume(
                lane.queue, functools.partial(self._on_message, self._generation, connection, lane)
            )
            self._consumer_tags.append(tag)

    def _stop_consuming(self) -> None:
        """Cancel the consumers: prefetched messages not yet handed to a job thread go back at once."""
        assert self._channel is not None
        for tag in self._consumer_tags:
            self._channel.basic_cancel(tag)
        self._consumer_tags = []

    def _serve(self, connection: BlockingConnection) -> None:
        while not self._stopping.is_set():
            connection.process_data_events(time_limit=1.0)
            if self._cancelled_by_broker:
                raise _Resubscribe("RabbitMQ cancelled a consumer (queue deleted or moved)")
            if self._database_down.is_set() and self._consumer_tags:
                log.warning("the database is unreachable: not taking jobs until it answers again")
                self._stop_consuming()
            elif not self._database_down.is_set() and not self._consumer_tags:
                log.info("the database answers again: taking jobs")
                self._consume(connection)
            self._stats.maybe_log(self._options.summary_interval, self._in_flight)
        self._drain(connection)

    def _drain(self, connection: BlockingConnection) -> None:
        """Cancel the consumers (undispatched prefetched messages go back at once), let the in-flight
        jobs finish and be acked, and return whatever is left after the drain timeout."""
        self._stop_consuming()
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
        delivery = Delivery.received(generation, connection, channel, method.delivery_tag, lane, props, body)
        try:
            job = Job.decode(body)
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
            result = self._gate.run(job, self._client, spent=delivery.esi_attempts)
        except EsiPaused as exc:
            log.debug("handing back %s %d: %s", job.kind, job.entity_id, exc)
            self._stats.add("handed back")
            self._settle(delivery, Action.HAND_BACK, delivery.esi_attempts)
            return
        except Exception as exc:
            if is_disconnect(exc):
                self._database_lost(exc)
                self._stats.add("handed back")
                self._settle(delivery, Action.HAND_BACK, delivery.esi_attempts)
                return
            log.exception("%s %d failed unexpectedly", job.kind, job.entity_id)  # a bug: retried
            result = Outcome(job=job, status=LedgerStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        if isinstance(result, Skipped):
            log.debug(
                "skipping %s %d (refresh %s): %s", job.kind, job.entity_id, job.refresh_id, result.reason
            )
            self._stats.add("skipped")
            if result.outcome is None:
                self._settle(delivery, Action.ACK)
            else:
                self._writer.put(result.outcome, delivery)
            return
        outcome = result
        transient = is_transient(outcome)
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
            try:
                self._gate.spent(job, outcome.attempts)
            except Exception as exc:  # noqa: BLE001 - the retry matters more than the count
                log.warning("cannot count the ESI requests of %s %d: %s", job.kind, job.entity_id, exc)
            self._stats.add("retried")
            self._settle(delivery, Action.RETRY, outcome.attempts)
            return
        if transient:
            outcome = dataclasses.replace(
                outcome, error=f"{outcome.error} (gave up after {delivery.attempt} attempts)"
            )
        self._writer.put(outcome, delivery)

    # -- the writer's results (writer thread) --------------------------------------------------------

    def _written(self, batch: Sequence[tuple[Outcome, Delivery]], _counts: WriteCounts) -> None:
        for outcome, delivery in batch:
            self._stats.add(outcome.status.value)
            self._settle(delivery, Action.ACK)

    def _not_written(self, outcome: Outcome, delivery: Delivery, exc: BaseException) -> None:
        if is_disconnect(exc):
            self._database_lost(exc)
            self._stats.add("handed back")
            self._settle(delivery, Action.HAND_BACK, delivery.esi_attempts)
            return
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
            assert self._retry_channel is not None
            delivery.retry_later(self._retry_channel, esi_attempts, next_attempt=action is Action.RETRY)

    # -- the database (any thread) -----------------------------------------------------------------

    def _database_lost(self, exc: BaseException) -> None:
        """Stop taking jobs and probe the database from a thread of its own until it answers."""
        with self._database_lock:
            if self._database_down.is_set():
                return
            self._database_down.set()
        log.warning("the database is unreachable (%s): handing jobs back until it answers", first_line(exc))
        threading.Thread(target=self._probe_database, name="database-probe", daemon=True).start()

    def _probe_database(self) -> None:
        started = time.monotonic()
        for attempt in itertools.count():
            if self._stopping.wait(_DATABASE_PROBES[min(attempt, len(_DATABASE_PROBES) - 1)]):
                return
            try:
                self._storage.ping()
            except Exception as exc:  # noqa: BLE001 - still down
                log.debug("database probe failed: %s", exc)
                continue
            log.info("the database answers again after %.0f s", time.monotonic() - started)
            self._database_down.clear()
            return


class _Resubscribe(Exception):
    """The broker cancelled a consumer: reconnect to subscribe again."""
