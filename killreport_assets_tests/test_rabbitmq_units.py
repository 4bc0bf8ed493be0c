"""The RabbitMQ topology and the worker's decisions that need no broker. Queue arguments are part of
the deployed contract (RabbitMQ refuses a queue redeclared with other ones), so they are pinned here."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import pika.exceptions
import pytest
import sqlalchemy as sa

from killreport_assets.jobs import Job, LedgerStatus, Outcome
from killreport_assets.registry import ALLIANCES, CORPORATIONS
from killreport_assets.storage import WriteCounts
from killreport_assets.transport.amqp import BrokerConfigError, config_error, parameters
from killreport_assets.transport.deliveries import WorkerOptions, is_transient
from killreport_assets.transport.topology import Topology
from killreport_assets.transport.writer import BatchWriter


class RecordingChannel:
    def __init__(self) -> None:
        self.queues: dict[str, dict[str, Any]] = {}
        self.exchanges: dict[str, str] = {}
        self.bindings: list[tuple[str, str, str]] = []

    def exchange_declare(self, name: str, *, exchange_type: str, durable: bool) -> None:
        assert durable
        self.exchanges[name] = exchange_type

    def queue_declare(self, name: str, *, durable: bool, arguments: dict[str, Any]) -> None:
        assert durable
        self.queues[name] = arguments

    def queue_bind(self, queue: str, exchange: str, *, routing_key: str) -> None:
        self.bindings.append((queue, exchange, routing_key))


def test_topology_declares_quorum_queues_with_dead_lettering_and_a_fixed_ttl_retry() -> None:
    channel = RecordingChannel()
    Topology(30).declare(channel)  # type: ignore[arg-type]
    assert channel.exchanges == {"killreport.dead-letter": "direct"}
    safe = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    for lane in ("alliances", "alliance_corporations", "corporations", "enrichment"):
        queue = f"killreport.{lane}"
        assert channel.queues[queue] == {
            "x-queue-type": "quorum",
            **safe,
            "x-delivery-limit": 10,
            "x-dead-letter-exchange": "killreport.dead-letter",
            "x-dead-letter-routing-key": f"{queue}.dead",
        }
        assert channel.queues[f"{queue}.retry.30s"] == {
            "x-queue-type": "quorum",
            **safe,
            "x-message-ttl": 30_000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }
        assert channel.queues[f"{queue}.dead"] == {"x-queue-type": "quorum"}
        assert (f"{queue}.dead", "killreport.dead-letter", f"{queue}.dead") in channel.bindings
    assert len(channel.queues) == 12


def test_lanes_are_selected_by_name_and_enrichment_gets_reserved_threads() -> None:
    topology = Topology(1)
    assert topology.lane_for(CORPORATIONS).queue == "killreport.corporations"
    with pytest.raises(ValueError, match="unknown queue.*nightly"):
        topology.select(["corporations", "nightly"])
    both = WorkerOptions(topology.select(["corporations", "enrichment"]), concurrency=20, max_attempts=3)
    assert both.enrichment_threads == 5
    assert (
        WorkerOptions(topology.select(["enrichment"]), concurrency=6, max_attempts=3).enrichment_threads == 6
    )
    assert (
        WorkerOptions(topology.select(["alliances"]), concurrency=2, max_attempts=3).enrichment_threads == 0
    )
    assert (
        WorkerOptions(
            topology.select(["alliances", "enrichment"]), concurrency=2, max_attempts=3
        ).enrichment_threads
        == 1
    )


@pytest.mark.parametrize(
    ("status", "http_status", "transient"),
    [
        (LedgerStatus.FAILED, 500, True),
        (LedgerStatus.FAILED, 503, True),
        (LedgerStatus.FAILED, 420, True),
        (LedgerStatus.FAILED, None, True),  # timeouts, connection errors
        (LedgerStatus.FAILED, 400, False),
        (LedgerStatus.FAILED, 200, False),  # an invalid body fails the same way every time
        (LedgerStatus.FAILED, 403, False),
        (LedgerStatus.GONE, 404, False),
        (LedgerStatus.DONE, 200, False),
    ],
)
def test_only_esi_unavailability_is_retried(
    status: LedgerStatus, http_status: int | None, transient: bool
) -> None:
    outcome = Outcome(Job("r", CORPORATIONS, 1), status, http_status=http_status, error="x")
    assert is_transient(outcome) is transient


def test_a_refresh_id_the_ledger_cannot_hold_makes_the_message_undecodable() -> None:
    assert Job.decode(Job("r" * 64, ALLIANCES, 1).encode()).refresh_id == "r" * 64
    with pytest.raises(ValueError, match="longer than 64"):
        Job.decode(Job("r" * 65, ALLIANCES, 1).encode())


def test_connection_parameters_default_heartbeat_and_blocked_timeout_unless_the_url_sets_them() -> None:
    params = parameters("amqp://u:p@broker:5672/%2F", "worker")
    assert (params.heartbeat, params.blocked_connection_timeout) == (30, 300)
    assert params.client_properties["connection_name"].startswith("killreport worker ")
    params = parameters("amqp://u:p@broker:5672/%2F?heartbeat=10&blocked_connection_timeout=60", "worker")
    assert (params.heartbeat, params.blocked_connection_timeout) == (10, 60)


def test_configuration_errors_are_told_from_outages_without_leaking_the_password() -> None:
    url = "amqp://user:secret@broker:5672/vh"
    login = config_error(pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"), url)
    assert isinstance(login, BrokerConfigError) and "refused the login" in str(login)
    vhost = config_error(pika.exceptions.ProbableAccessDeniedError("NOT_ALLOWED"), url)
    assert vhost is not None and "virtual host" in str(vhost)
    clash = config_error(
        pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg"), url
    )
    assert clash is not None and "delete_queue" in str(clash)
    assert all("secret" not in str(e) for e in (login, vhost, clash))
    assert config_error(pika.exceptions.StreamLostError("reset"), url) is None
    # pika's "probable" errors also come from a connection reset during the handshake: an outage
    reset = 'StreamLostError: ("Stream connection lost: ConnectionResetError(104, ...)",)'
    for guess in (pika.exceptions.ProbableAuthenticationError, pika.exceptions.IncompatibleProtocolError):
        assert config_error(guess(reset), url) is None
    assert config_error(pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED"), url) is None


class FlakyStorage:
    """`Storage.apply` that rejects batches holding a bad entity, or everything while "down"."""

    def __init__(self, bad: set[int], down: bool = False) -> None:
        self.bad = bad
        self.down = down

    def apply(self, outcomes: Sequence[Outcome]) -> WriteCounts:
        if self.down:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        if any(o.job.entity_id in self.bad for o in outcomes):
            raise sa.exc.DataError("INSERT", {}, Exception("value out of range"))
        return WriteCounts(created=len(outcomes))


def _write_through(storage: FlakyStorage, ids: list[int]) -> tuple[set[int], set[int]]:
    """Feed outcomes for `ids` to a writer; return (acked, not written) entity ids."""
    results: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
    writer: BatchWriter[None] = BatchWriter(
        storage,  # type: ignore[arg-type]
        max_batch=200,
        written=lambda batch, _counts: [results.put(("written", o.job.entity_id)) for o, _ in batch],
        not_written=lambda o, _delivery, _exc: results.put(("failed", o.job.entity_id)),
    )
    for i in ids:
        writer.put(Outcome(Job("r", CORPORATIONS, i), LedgerStatus.DONE), None)
    seen = [results.get(timeout=30) for _ in ids]
    writer.stop()
    return {i for kind, i in seen if kind == "written"}, {i for kind, i in seen if kind == "failed"}


def test_a_bad_outcome_does_not_hold_back_the_rest_of_its_batch() -> None:
    assert _write_through(FlakyStorage(bad={3}), [1, 2, 3, 4, 5]) == ({1, 2, 4, 5}, {3})


def test_a_database_outage_fails_the_whole_batch_without_retrying_row_by_row() -> None:
    assert _write_through(FlakyStorage(bad=set(), down=True), [1, 2, 3]) == (set(), {1, 2, 3})
