"""The RabbitMQ topology: queue names, their arguments, and the one function that declares them.

The asset (publisher), every worker and `killreport queues` declare through `Topology.declare`,
because RabbitMQ refuses (406, channel closed) a redeclaration with different arguments.

Each registered entity kind has a lane of its own name, and so does enrichment:

    killreport.<lane>                work queue: quorum, x-delivery-limit, dead-letters to ...
    killreport.<lane>.dead           ... this queue (garbage, crash loops): kept for an operator
    killreport.<lane>.retry.<N>s     delayed retry: the worker republishes a transiently failed job
                                     here; after the fixed TTL it dead-letters back to the work queue

The retry delay is part of the retry queue's name, so changing `KILLREPORT_RETRY_DELAY_SECONDS`
declares a new queue instead of clashing with the old one's TTL (the old one drains into the work
queue by itself). The delivery limit is fixed: changing it means deleting the drained work queues.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel

from killreport_assets.registry import REGISTRY, EntityKind

PREFIX = "killreport"
DEAD_LETTER_EXCHANGE = f"{PREFIX}.dead-letter"
ENRICHMENT = "enrichment"
# Deliveries without an ack (crashed or disconnected workers) before RabbitMQ dead-letters a job.
# The worker quarantines a job on its last allowed delivery (records it failed), so reaching the
# limit needs a worker that cannot even write to the database. Broker restarts, SIGKILLed workers
# and graceful shutdowns each count one delivery, hence some headroom.
DELIVERY_LIMIT = 10
# Queue-level attempt number of a delivery (absent on the first), and the ESI requests that the
# earlier attempts made; the worker sets both when it republishes a job to the retry queue.
ATTEMPT_HEADER = "x-killreport-attempt"
ESI_ATTEMPTS_HEADER = "x-killreport-esi-attempts"
# Set by quorum queues: how many earlier deliveries of this message were not acknowledged.
DELIVERY_COUNT_HEADER = "x-delivery-count"

# Dead-letter without losing messages on the way (RabbitMQ 3.10+ quorum queues; needs reject-publish).
_SAFE_DEAD_LETTERING = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def lane_names() -> tuple[str, ...]:
    """Every lane: one per registered kind, then enrichment."""
    return (*REGISTRY.names, ENRICHMENT)


@dataclass(frozen=True)
class Lane:
    """A work queue with its retry and dead-letter queues."""

    name: str
    queue: str
    retry_queue: str
    dead_queue: str

    @property
    def enrichment(self) -> bool:
        return self.name == ENRICHMENT


class Topology:
    def __init__(self, retry_delay_seconds: int) -> None:
        if retry_delay_seconds < 1:
            raise ValueError("the retry delay must be at least 1 second")
        self.retry_delay_seconds = retry_delay_seconds
        self.lanes: dict[str, Lane] = {
            name: Lane(
                name=name,
                queue=f"{PREFIX}.{name}",
                retry_queue=f"{PREFIX}.{name}.retry.{retry_delay_seconds}s",
                dead_queue=f"{PREFIX}.{name}.dead",
            )
            for name in lane_names()
        }

    def lane_for(self, kind: EntityKind) -> Lane:
        """The nightly lane of `kind` jobs."""
        return self.lanes[kind.name]

    @property
    def enrichment(self) -> Lane:
        return self.lanes[ENRICHMENT]

    def select(self, names: Iterable[str]) -> list[Lane]:
        """Lanes by name, in declaration order; unknown names raise ValueError listing the valid ones."""
        wanted = set(names)
        unknown = sorted(wanted - set(self.lanes))
        if unknown:
            raise ValueError(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(self.lanes)}")
        return [lane for name, lane in self.lanes.items() if name in wanted]

    def declare(self, channel: BlockingChannel) -> None:
        """Declare every exchange, queue and binding (idempotent when the arguments match)."""
        channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
        for lane in self.lanes.values():
            channel.queue_declare(lane.dead_queue, durable=True, arguments=_quorum())
            channel.queue_bind(lane.dead_queue, DEAD_LETTER_EXCHANGE, routing_key=lane.dead_queue)
            channel.queue_declare(
                lane.queue,
                durable=True,
                arguments=_quorum(
                    **_SAFE_DEAD_LETTERING,
                    **{
                        "x-delivery-limit": DELIVERY_LIMIT,
                        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                        "x-dead-letter-routing-key": lane.dead_queue,
                    },
                ),
            )
            channel.queue_declare(
                lane.retry_queue,
                durable=True,
                arguments=_quorum(
                    **_SAFE_DEAD_LETTERING,
                    **{
                        "x-message-ttl": self.retry_delay_seconds * 1000,
                        "x-dead-letter-exchange": "",  # the default exchange: routing key = queue name
                        "x-dead-letter-routing-key": lane.queue,
                    },
                ),
            )


def _quorum(**arguments: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **arguments}
