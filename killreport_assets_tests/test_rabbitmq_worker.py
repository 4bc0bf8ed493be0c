"""`killreport worker` against the real RabbitMQ and PostgreSQL: poison and garbage, no worker at all,
enrichment ahead of the nightly bulk, and the operator commands (`queues`, `enqueue`, config errors)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pika
import sqlalchemy as sa

from killreport_assets.jobs import Job
from killreport_assets.jobs.gate import ENTITY_REQUEST_BUDGET
from killreport_assets.registry import CORPORATIONS
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.transport.rabbitmq import enqueue_enrichment
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows
from killreport_assets_tests.rabbit_support import (
    TEST_ENV,
    RabbitStack,
    wait_for,
)
from killreport_assets_tests.refresh_support import assert_tables_match, failure_message, materialize_all
from killreport_assets_tests.reliability import Row, damage, record


def _publish_raw(url: str, queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


def test_poison_entity_fails_after_bounded_attempts_and_garbage_is_dead_lettered(stack: RabbitStack) -> None:
    config = SimulatorConfig(seed=23, alliances=60, corporations=300)
    with SimulatorServer(config) as simulator:
        poison = sorted(simulator.universe.member_corporation_ids())[7]
        simulator.configure(poison_corporations=[poison])
        worker = stack.start_worker(simulator.url, "--concurrency", "4")
        stack.wait_for_consumers("killreport.corporations", 1)
        # Garbage before the refresh, in a nightly queue and in the enrichment queue.
        _publish_raw(stack.url, "killreport.corporations", b"\x00not a job\xff")
        _publish_raw(
            stack.url, "killreport.enrichment", b'{"v": 99, "refresh_id": "x", "kind": "corporation"}'
        )

        result = materialize_all(stack.resources(simulator.url))
        assert result.success, "one failed corporation is below the 1% limit; garbage stops nothing"
        assert_tables_match(stack.storage, simulator.universe, stale=frozenset({poison}))

        ledger = t.refresh_ledger
        row = rows(
            stack.storage,
            sa.select(ledger).where(ledger.c.refresh_id == result.run_id, ledger.c.entity_id == poison),
        )[0]
        assert (row.status, row.http_status) == ("failed", 500)
        # 3 queue-level attempts of up to 4 requests each would be 12: the entity's budget stops at 10
        assert row.attempts == ENTITY_REQUEST_BUDGET == simulator.stats()["faults"]["poison"]
        assert "HTTP 500" in row.last_error and "gave up after 3 attempts" in row.last_error

        assert stack.queue("killreport.corporations.dead")[0] == 1
        assert stack.queue("killreport.enrichment.dead")[0] == 1
        assert stack.queue("killreport.corporations.retry.1s")[0] == 0
        log = worker.log()
        assert "dead-lettering a message from killreport.corporations" in log and r"not a job\xff" in log
        assert "unsupported schema version 99" in log
        assert worker.process.poll() is None, "the worker carried on"
        found = damage(stack.storage, simulator.universe)
    record(
        Row(
            "6a",
            "one corporation answering 500 to every request; garbage and a schema-99 message queued "
            "(RabbitMQ mode)",
            "a broken entity, bad messages",
            "the entity fails with its reason after 10 requests (was 12), so it is the 1 lost, by design; "
            "messages dead-lettered; the rest completes",
            found.lost,
            found.duplicated,
            found.stale,
            f"{row.attempts} for the failing corporation",
            None,
        )
    )


def test_a_refresh_without_workers_fails_within_seconds_saying_to_start_one(stack: RabbitStack) -> None:
    with SimulatorServer(SimulatorConfig(seed=3, alliances=60, corporations=300)) as simulator:
        started = time.monotonic()
        result = materialize_all(stack.resources(simulator.url))
        elapsed = time.monotonic() - started
    assert not result.success
    assert elapsed < 30, f"failed after {elapsed:.0f} s"
    message = failure_message(result)
    assert "no worker consumes killreport.alliances" in message and "killreport worker" in message
    assert stack.queue("killreport.alliances")[0] == 0, "nothing was published for nobody"


def test_enrichment_is_served_ahead_of_the_nightly_bulk(stack: RabbitStack) -> None:
    config = SimulatorConfig(seed=29, alliances=80, corporations=400, latency_ms=50)
    with SimulatorServer(config) as simulator:
        stack.start_worker(simulator.url, "--concurrency", "4")
        stack.wait_for_consumers("killreport.corporations", 1)
        outcome: dict[str, dg.ExecuteInProcessResult] = {}
        run = threading.Thread(
            target=lambda: outcome.update(result=materialize_all(stack.resources(simulator.url)))
        )
        run.start()
        try:
            wait_for(
                lambda: stack.progress("corporations").finished >= 40, "the corporations step to be under way"
            )
            refresh_id = stack.storage.ledger.latest_refresh(step="corporations")
            pending = sorted(
                stack.storage.ledger.pending_ids(refresh_id, "corporations")
            )  # the bulk is published in ID order: these five come last
            chosen = pending[-5:]
            enqueued_at = time.monotonic()
            enqueue_enrichment(stack.url, 1, [Job("enrichment-test", CORPORATIONS, i) for i in chosen])
            wait_for(
                lambda: stack.progress("corporations", "enrichment-test").finished == len(chosen),
                "the enrichment jobs to finish",
            )
            served_in = time.monotonic() - enqueued_at
            bulk = stack.progress("corporations", refresh_id)
            still_pending = set(stack.storage.ledger.pending_ids(refresh_id, "corporations"))
        finally:
            run.join(300)
    assert outcome["result"].success
    assert bulk.pending >= 100, f"enrichment finished while {bulk.pending} bulk jobs were still queued"
    assert set(chosen) <= still_pending, "served before their own nightly jobs, queued long before"
    assert served_in < 10, served_in


def test_queues_and_enqueue_commands(stack: RabbitStack, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **TEST_ENV,
        "KILLREPORT_RABBITMQ_URL": stack.url,
        "KILLREPORT_DATABASE_URL": stack.database_url,
    }

    def killreport(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "killreport_assets.cli", *args],
            env={**env, **overrides},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )

    done = killreport("enqueue", "corporation", "98000001", "98000002", "98000001")
    assert done.returncode == 0, done.stderr
    assert "queued 2 corporation job(s)" in done.stdout
    assert "no worker consumes the enrichment queue" in done.stderr
    assert stack.queue("killreport.enrichment")[0] == 2

    done = killreport("queues")
    assert done.returncode == 0, done.stderr
    lines = {
        line.split()[0]: line.split()
        for line in done.stdout.splitlines()
        if line.strip().startswith("killreport.")
    }
    assert set(lines) == {
        "killreport.alliances",
        "killreport.alliance_corporations",
        "killreport.corporations",
        "killreport.enrichment",
    }
    assert lines["killreport.enrichment"][1:2] == ["2"], done.stdout
    assert "unacked" in done.stdout and "refresh: nothing recorded" in done.stdout

    bad_password = stack.url.replace("guest:guest@", "guest:wrong@")
    done = killreport("worker", KILLREPORT_RABBITMQ_URL=bad_password)
    assert done.returncode == 2 and "refused the login" in done.stderr, done.stderr
    done = killreport("worker", KILLREPORT_RABBITMQ_URL=stack.url + "_missing")
    assert done.returncode == 2 and "denied access to the virtual host" in done.stderr, done.stderr
    done = killreport("worker", KILLREPORT_RABBITMQ_URL="")
    assert done.returncode == 2 and "KILLREPORT_RABBITMQ_URL is not set" in done.stderr, done.stderr
