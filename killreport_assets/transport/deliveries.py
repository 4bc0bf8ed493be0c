"""A worker's vocabulary: its options, one delivery and how it is settled, when a failure is worth
retrying, the message headers it reads and writes, and the counts it logs."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from killreport_assets.jobs import LedgerStatus, Outcome
from killreport_assets.registry import Gone
from killreport_assets.transport.publisher import PERSISTENT_JSON
from killreport_assets.transport.topology import (
    ATTEMPT_HEADER,
    DELIVERY_COUNT_HEADER,
    ESI_ATTEMPTS_HEADER,
    Lane,
)

log = logging.getLogger("killreport_assets.transport.worker")


class Action(Enum):
    ACK = "ack"
    RETRY = "retry"  # republish to the retry queue as the next attempt, then ack
    HAND_BACK = "hand back"  # republish to the retry queue as the same attempt (nothing was tried)
    DEAD = "dead"  # nack without requeue: the dead-letter queue


@dataclass(frozen=True)
class WorkerOptions:
    lanes: Sequence[Lane]
    concurrency: int
    max_attempts: int
    summary_interval: float = 30.0
    drain_timeout: float = 30.0
    max_batch: int = 200
    lease_ttl: float = 120.0  # see RefreshSettings.lease_ttl

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

    @classmethod
    def received(
        cls,
        generation: int,
        connection: BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        lane: Lane,
        props: pika.BasicProperties,
        body: bytes,
    ) -> Delivery:
        headers = props.headers or {}
        return cls(
            generation=generation,
            connection=connection,
            channel=channel,
            tag=tag,
            lane=lane,
            body=body,
            attempt=_int_header(headers, ATTEMPT_HEADER, 1),
            esi_attempts=_int_header(headers, ESI_ATTEMPTS_HEADER, 0),
            redeliveries=_int_header(headers, DELIVERY_COUNT_HEADER, 0),
        )

    def retry_later(
        self, retry_channel: BlockingChannel, esi_attempts: int, *, next_attempt: bool = True
    ) -> None:
        """Copy to the lane's retry queue (confirmed), then ack; if the broker refuses the copy, requeue.
        A copy is a new message, so its broker delivery count starts again. Runs on the
        connection's thread."""
        headers = {ATTEMPT_HEADER: self.attempt + next_attempt, ESI_ATTEMPTS_HEADER: esi_attempts}
        properties = pika.BasicProperties(
            delivery_mode=PERSISTENT_JSON.delivery_mode,
            content_type=PERSISTENT_JSON.content_type,
            headers=headers,
        )
        try:
            retry_channel.basic_publish("", self.lane.retry_queue, self.body, properties, mandatory=True)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as exc:
            log.warning("cannot schedule a retry on %s (%r); requeueing", self.lane.retry_queue, exc)
            self.channel.basic_nack(self.tag, requeue=True)
            return
        self.channel.basic_ack(self.tag)


class WorkerStats:
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


def is_transient(outcome: Outcome) -> bool:
    """Whether a FAILED outcome may succeed later: ESI unavailable (5xx, timeouts, no connection,
    throttled) or a stray 404 where its kind has none, as opposed to a 400 or an invalid body, which
    fail the same way every time."""
    if outcome.status is not LedgerStatus.FAILED:
        return False
    status = outcome.http_status
    stray_404 = status == 404 and outcome.job.kind.gone is Gone.RETRY
    return status is None or status >= 500 or status in (420, 429) or stray_404


def _int_header(headers: dict[str, Any], name: str, default: int) -> int:
    value = headers.get(name, default)
    return value if isinstance(value, int) and value >= 0 else default
