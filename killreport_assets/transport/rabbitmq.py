"""RabbitMQ transport, the asset's side: publish a step's jobs to `killreport worker` processes.

`run_step` records the jobs as pending in the ledger, calls `submit`, then polls the ledger and
calls `check` on every poll. Completion is never read from queue counts. What this transport adds is
failing fast when no progress is possible: `submit` refuses to publish when no worker consumes
the step's queue (an operator must start one; publishing anyway would leave a run's worth of
stale jobs in the queue), and `check` fails once the workers have been gone, or the broker
unreachable, for longer than a broker restart or a worker reconnect takes.

The connection used for those checks stays open between polls; `check` runs its I/O loop (so
heartbeats are answered) and reopens it after a broker restart.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import defaultdict
from collections.abc import Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from killreport_assets.envvars import redact_url
from killreport_assets.jobs import Job
from killreport_assets.transport.amqp import broker_problem, close_quietly, config_error, parameters
from killreport_assets.transport.base import NoWorkerError, TransportError
from killreport_assets.transport.publisher import PublishError, publish
from killreport_assets.transport.topology import Lane, Topology

log = logging.getLogger(__name__)

# How long `submit` waits for a consumer on the step's queue (a worker that is just starting).
SUBMIT_GRACE = 5.0
# How long a step tolerates no consumer, or no broker, while waiting: a broker restart plus the
# workers' reconnect backoff fit well inside it.
RECOVERY_GRACE = 60.0
# Queue checks are cheap but not free; the ledger poll may be much faster than this.
CHECK_INTERVAL = 2.0


class RabbitTransport:
    def __init__(self, url: str, retry_delay: int) -> None:
        self._url = url
        self._params = parameters(url, "asset")
        self._topology = Topology(retry_delay)
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._lanes: dict[str, Lane] = {}
        self._next_check = 0.0
        self._unhealthy_since: float | None = None

    def submit(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        by_lane: dict[Lane, list[Job]] = defaultdict(list)
        for job in jobs:
            by_lane[self._topology.lane_for(job.kind)].append(job)
        try:
            channel = self._open()
            for lane in by_lane:
                self._await_consumer(channel, lane)
        except (pika.exceptions.AMQPError, socket.gaierror) as exc:
            self._close_connection()
            raise self._broker_error(exc) from exc
        started = time.monotonic()
        try:
            publish(
                self._params, [(lane.queue, job.encode()) for lane, group in by_lane.items() for job in group]
            )
        except PublishError as exc:
            raise TransportError(f"publishing to RabbitMQ at {redact_url(self._url)} failed: {exc}") from exc
        seconds = time.monotonic() - started
        log.info(
            "published %d jobs to %s in %.1f s (%.0f/s, all confirmed)",
            len(jobs),
            ", ".join(lane.queue for lane in by_lane),
            seconds,
            len(jobs) / seconds if seconds else 0.0,
        )
        self._lanes.update((lane.name, lane) for lane in by_lane)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # the workers' progress is seen in the ledger only

    def check(self) -> None:
        """Raise when the submitted jobs cannot progress: no consumer, or no broker, for too long."""
        now = time.monotonic()
        if now < self._next_check or not self._lanes:
            return
        self._next_check = now + CHECK_INTERVAL
        try:
            channel = self._open()
            idle = [lane for lane in self._lanes.values() if _consumers(channel, lane) == 0]
            problem = None if not idle else f"no worker consumes {', '.join(lane.queue for lane in idle)}"
        except (pika.exceptions.AMQPError, socket.gaierror) as exc:
            self._close_connection()
            if (error := config_error(exc, self._url)) is not None:
                raise TransportError(str(error)) from exc
            problem = f"RabbitMQ at {redact_url(self._url)} is unreachable ({exc!r})"
            idle = []
        if problem is None:
            if self._unhealthy_since is not None:
                log.info("workers are consuming again")
            self._unhealthy_since = None
            return
        if self._unhealthy_since is None:
            log.warning("%s; waiting up to %.0f s for it to recover", problem, RECOVERY_GRACE)
            self._unhealthy_since = now
        elif now - self._unhealthy_since > RECOVERY_GRACE:
            message = f"{problem} for {now - self._unhealthy_since:.0f} s"
            if idle:
                raise NoWorkerError(f"{message}: {_START_WORKER}")
            raise TransportError(f"{message}; the queued jobs are safe, re-run once the broker is back")

    def close(self) -> None:
        self._close_connection()

    def __enter__(self) -> RabbitTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> BlockingChannel:
        if self._connection is not None and self._connection.is_open and self._channel is not None:
            if self._channel.is_open:
                self._connection.process_data_events(0)
                return self._channel
            self._close_connection()
        self._connection = pika.BlockingConnection(self._params)
        self._channel = self._connection.channel()
        self._topology.declare(self._channel)
        return self._channel

    def _await_consumer(self, channel: BlockingChannel, lane: Lane) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + SUBMIT_GRACE
        while _consumers(channel, lane) == 0:
            if time.monotonic() >= deadline:
                raise NoWorkerError(
                    f"no worker consumes {lane.queue} on {redact_url(self._url)}: {_START_WORKER}"
                )
            self._connection.sleep(0.25)

    def _broker_error(self, exc: BaseException) -> TransportError:
        error = config_error(exc, self._url)
        if error is not None:
            return TransportError(str(error))
        return TransportError(f"cannot use RabbitMQ at {redact_url(self._url)}: {exc!r}")

    def _close_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        close_quietly(connection)


_START_WORKER = (
    "start at least one `killreport worker` (same KILLREPORT_RABBITMQ_URL and KILLREPORT_DATABASE_URL) "
    "and re-run; `killreport queues` shows the consumers of each queue"
)


def enqueue_enrichment(url: str, retry_delay: int, jobs: Sequence[Job]) -> int:
    """Publish on-demand jobs to the enrichment queue (confirmed); returns its consumer count, so the
    caller can warn that nothing will happen before a worker starts. The jobs wait in the queue."""
    topology = Topology(retry_delay)
    params = parameters(url, "enqueue")
    try:
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            topology.declare(channel)
            consumers = _consumers(channel, topology.enrichment)
        finally:
            close_quietly(connection)
        publish(params, [(topology.enrichment.queue, job.encode()) for job in jobs])
    except (pika.exceptions.AMQPError, socket.gaierror, PublishError) as exc:
        raise TransportError(broker_problem(exc, url)) from exc
    return consumers


def _consumers(channel: BlockingChannel, lane: Lane) -> int:
    return channel.queue_declare(lane.queue, passive=True).method.consumer_count
