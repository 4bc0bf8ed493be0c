"""What `killreport queues` reports: each lane's queue counts, and the ledger's progress.

AMQP itself only tells ready messages and consumers (a passive declare); unacknowledged deliveries
are known to the management plugin's HTTP API alone, so they are read from there when it answers
and reported as unknown, with the reason, when it does not. Counts are a picture for operators,
never a completion signal: steps finish on the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pika
import sqlalchemy as sa
from pika.adapters.blocking_connection import BlockingChannel

from killreport_assets.jobs.model import JobKind
from killreport_assets.steps import describe
from killreport_assets.storage import StepProgress, Storage
from killreport_assets.storage import tables as t
from killreport_assets.transport.amqp import close_quietly, parameters
from killreport_assets.transport.topology import Lane, Topology

MANAGEMENT_PORT = 15672
ENRICHMENT_REFRESH_PREFIX = "enrichment"


@dataclass(frozen=True)
class LaneCounts:
    lane: Lane
    ready: int
    consumers: int
    unacked: int | None  # None: the management API did not say
    retrying: int
    dead_lettered: int


@dataclass(frozen=True)
class StepReport:
    step: str
    progress: StepProgress
    elapsed: float

    def describe(self) -> str:
        return describe(self.progress, self.elapsed)


def lane_counts(
    url: str, topology: Topology, management_url: str | None
) -> tuple[list[LaneCounts], str | None]:
    """Counts per lane, plus why unacked counts are missing (None when they are all there)."""
    params = parameters(url, "queues")
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        topology.declare(channel)
        counts = [
            (
                lane,
                _declare_ok(channel, lane.queue),
                _declare_ok(channel, lane.retry_queue),
                _declare_ok(channel, lane.dead_queue),
            )
            for lane in topology.lanes.values()
        ]
    finally:
        close_quietly(connection)
    unacked, problem = _unacked(params, management_url, [lane.queue for lane, *_ in counts])
    return [
        LaneCounts(
            lane=lane,
            ready=work.message_count,
            consumers=work.consumer_count,
            unacked=unacked.get(lane.queue),
            retrying=retry.message_count,
            dead_lettered=dead.message_count,
        )
        for lane, work, retry, dead in counts
    ], problem


def refresh_report(storage: Storage, refresh_id: str) -> list[StepReport]:
    """Per-step progress of one refresh, for the steps it has reached."""
    ledger = t.refresh_ledger
    spans = storage.rows(
        sa.select(ledger.c.step, sa.func.min(ledger.c.created_at), sa.func.max(ledger.c.updated_at))
        .where(ledger.c.refresh_id == refresh_id)
        .group_by(ledger.c.step)
    )
    elapsed = {step: _seconds(first, last) for step, first, last in spans}
    order = [kind.step for kind in JobKind]
    return [
        StepReport(step, storage.progress(refresh_id, step), elapsed[step])
        for step in sorted(elapsed, key=lambda s: order.index(s) if s in order else len(order))
    ]


def latest_nightly_refresh(storage: Storage) -> str | None:
    """The most recent refresh that is not enrichment (enrichment rows arrive around the clock)."""
    ledger = t.refresh_ledger
    return storage.scalar(
        sa.select(ledger.c.refresh_id)
        .where(~ledger.c.refresh_id.startswith(ENRICHMENT_REFRESH_PREFIX))
        .order_by(ledger.c.created_at.desc())
        .limit(1)
    )


def enrichment_refresh_id(day: dt.date) -> str:
    """The refresh id `killreport enqueue` gives on-demand jobs: one per UTC day."""
    return f"{ENRICHMENT_REFRESH_PREFIX}-{day.isoformat()}"


def _declare_ok(channel: BlockingChannel, queue: str) -> pika.spec.Queue.DeclareOk:
    return channel.queue_declare(queue, passive=True).method


def _unacked(
    params: pika.ConnectionParameters, management_url: str | None, queues: list[str]
) -> tuple[dict[str, int], str | None]:
    base = (management_url or f"http://{params.host}:{MANAGEMENT_PORT}").rstrip("/")
    vhost = quote(params.virtual_host, safe="")
    credentials = params.credentials
    found: dict[str, int] = {}
    try:
        with httpx.Client(auth=(credentials.username, credentials.password), timeout=3.0) as client:
            for queue in queues:
                response = client.get(f"{base}/api/queues/{vhost}/{quote(queue, safe='')}")
                response.raise_for_status()
                value = response.json().get("messages_unacknowledged")
                if isinstance(value, int):
                    found[queue] = value
    except (httpx.HTTPError, ValueError) as exc:
        return found, (
            f"unacked is unknown: the RabbitMQ management API at {base} did not answer ({exc}); enable it "
            "with `rabbitmq-plugins enable rabbitmq_management` or set KILLREPORT_RABBITMQ_MANAGEMENT_URL"
        )
    if len(found) < len(queues):
        return (
            found,
            "unacked is unknown for new queues until the management API collects their statistics (5 s)",
        )
    return found, None


def _seconds(first: dt.datetime | None, last: dt.datetime | None) -> float:
    if first is None or last is None:
        return 0.0
    return max(0.0, (last - first).total_seconds())
