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
from pika.adapters.blocking_connection import BlockingChannel

from killreport_assets.registry import REGISTRY
from killreport_assets.steps import describe
from killreport_assets.storage import Storage
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


def refresh_report(storage: Storage, refresh_id: str) -> list[tuple[str, str]]:
    """(step, done/total, rate and ETA) of one refresh, for the steps it has reached, in refresh order."""
    order = list(REGISTRY.names)
    spans = sorted(
        storage.ledger.step_spans(refresh_id),
        key=lambda span: order.index(span.step) if span.step in order else len(order),
    )
    return [
        (span.step, describe(storage.ledger.progress(refresh_id, span.step), span.seconds)) for span in spans
    ]


def latest_nightly_refresh(storage: Storage) -> str | None:
    """The most recent refresh that is not enrichment (enrichment rows arrive around the clock)."""
    return storage.ledger.latest_refresh(excluding_prefix=ENRICHMENT_REFRESH_PREFIX)


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
