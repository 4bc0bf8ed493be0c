"""Fault scenarios: every part failing at the worst moment, each ending with the tables compared
field by field against the simulator's universe and a row in docs/reliability.md (see
`reliability.py`). Real PostgreSQL, real RabbitMQ, worker and Dagster processes, signals."""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pika
import pytest
import sqlalchemy as sa

from killreport_assets.jobs import Job
from killreport_assets.registry import CORPORATIONS
from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import LedgerStatus, Storage
from killreport_assets.transport.rabbitmq import RabbitTransport
from killreport_assets_tests import schema as t
from killreport_assets_tests.dagster_support import BIN
from killreport_assets_tests.databases import OwnedPostgres, postgres_database
from killreport_assets_tests.db import rows
from killreport_assets_tests.esi_faults import Faults, FaultyEsi
from killreport_assets_tests.rabbit_support import (
    RABBITMQ_ADDRESS,
    TEST_ENV,
    RabbitStack,
    WorkerProcess,
    wait_for,
)
from killreport_assets_tests.refresh_support import assert_tables_match, failure_message, materialize_all
from killreport_assets_tests.reliability import Row, damage, record
from killreport_assets_tests.tcp_proxy import TcpProxy

UNIVERSE = SimulatorConfig(seed=23, alliances=60, corporations=300)
SLOW = SimulatorConfig(seed=29, alliances=60, corporations=300, latency_ms=40)
# For faults injected one after another in one step: ~15 s of corporations at 4 threads.
LONG = SimulatorConfig(seed=19, alliances=80, corporations=600, latency_ms=100)
CORPORATION = "/corporations/{}"


@contextmanager
def faulty(config: SimulatorConfig) -> Iterator[tuple[SimulatorServer, Faults]]:
    faults = Faults()
    simulator = SimulatorServer(config)
    simulator.app = FaultyEsi(simulator.app, faults)
    with simulator:
        yield simulator, faults


@contextmanager
def embedded(config: SimulatorConfig) -> Iterator[tuple[SimulatorServer, Faults, Storage, Mapping[str, Any]]]:
    """Embedded mode on a fresh PostgreSQL database against a faulty simulator: the simulator, its
    faults, the database's storage and the refresh resources."""
    with postgres_database() as url, faulty(config) as (simulator, faults):
        storage = Storage.open(url)
        try:
            yield (
                simulator,
                faults,
                storage,
                refresh_resources(database_url=url, esi_base_url=simulator.url, poll_interval_seconds=0.1),
            )
        finally:
            storage.dispose()


def under_way(storage: Storage, count: int, timeout: float = 120) -> None:
    """Wait until `count` corporations are finished, and check the step is not over yet: a fault
    injected now lands in the middle of the step."""
    wait_for(lambda: finished(storage, "corporations") >= count, f"{count} corporations finished", timeout)
    assert pending(storage) > 0, f"the corporations step is still under way at {count}"


def corporation_requests(faults: Faults) -> int:
    return sum(n for path, n in faults.requests.items() if path.startswith("/corporations/"))


def in_background(action: Callable[[], dg.ExecuteInProcessResult]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=action()))
    thread.start()
    return thread, outcome


def pending(storage: Storage, step: str = "corporations") -> int:
    refresh_id = storage.ledger.latest_refresh(step=step)
    return 0 if refresh_id is None else storage.ledger.progress(refresh_id, step).pending


def finished(storage: Storage, step: str) -> int:
    """Entities finished in the latest refresh that reached `step` (0 before the schema exists)."""
    try:
        refresh_id = storage.ledger.latest_refresh(step=step)
    except sa.exc.ProgrammingError:  # not migrated yet
        return 0
    return 0 if refresh_id is None else storage.ledger.progress(refresh_id, step).finished


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KILLREPORT_RABBITMQ_URL", raising=False)


def test_jobs_of_a_dead_run_are_skipped_and_the_next_run_does_not_wait_behind_them(
    stack: RabbitStack,
) -> None:
    """The run that queued 300 corporation jobs died (its lease stopped being renewed): a worker acks
    them without an ESI request and the ledger says why; the next refresh runs at once."""
    with faulty(UNIVERSE) as (simulator, faults):
        assert stack.storage is not None
        storage = stack.storage
        ids = sorted(simulator.universe.member_corporation_ids())
        storage.ledger.add_pending("dead-run", "corporations", ids)
        storage.leases.acquire("corporations", "dead-run", "a run killed by the test", 120.0)
        with storage.engine.begin() as conn:
            conn.execute(
                t.step_leases.update().values(heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
            )
        worker = stack.start_worker(simulator.url, "--concurrency", "4")
        stack.wait_for_consumers("killreport.corporations", 1)
        with RabbitTransport(stack.url, 1) as transport:
            transport.submit([Job("dead-run", CORPORATIONS, i) for i in ids])
        wait_for(lambda: not storage.ledger.pending_ids("dead-run", "corporations"), "the dead run's jobs")
        assert corporation_requests(faults) == 0, "no ESI request for a dead run's job"
        statuses = {
            (r.status, "stopped renewing" in r.last_error)
            for r in rows(
                storage, sa.select(t.refresh_ledger).where(t.refresh_ledger.c.refresh_id == "dead-run")
            )
        }
        assert statuses == {(LedgerStatus.WITHDRAWN.value, True)}
        started = time.monotonic()
        result = materialize_all(stack.resources(simulator.url))
        seconds = time.monotonic() - started
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
    assert "skipped" in worker.log()
    record(
        Row(
            "1b",
            "300 queued corporation jobs of a run whose Dagster process died (lease heartbeat 1 h old)",
            "a dead run's backlog",
            "workers ack them without ESI requests, ledger rows 'withdrawn' with the reason; the next run is not held up",
            found.lost,
            found.duplicated,
            found.stale,
            "0 for the dead run's 300 jobs",
            round(seconds, 1),
        )
    )


def test_an_esi_outage_opens_the_circuit_and_the_step_rides_it_out(
    embedded_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ESI route answers 503 for 12 s in the middle of the corporations step, with a stall
    timeout of 6 s: the circuit breaker stops the error burn (one probe every few seconds), the step
    counts the pause as no stall, and the refresh completes once ESI is back."""
    monkeypatch.setenv("KILLREPORT_STALL_TIMEOUT_SECONDS", "6")
    with embedded(SLOW) as (simulator, faults, storage, resources):
        thread, outcome = in_background(lambda: materialize_all(resources))
        try:
            under_way(storage, 60)
            faults.outage = 503
            wait_for(lambda: storage.pauses.active(), "a reported ESI pause", 60)
            before = sum(faults.requests.values())
            outage_started = time.monotonic()
            wait_for(lambda: time.monotonic() - outage_started >= 12, "12 s of outage", 30, interval=0.5)
            during = sum(faults.requests.values()) - before
            faults.outage = None
            ended = time.monotonic()
        finally:
            thread.join(300)
        recovery = time.monotonic() - ended
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert during <= 8, f"{during} requests in 12 s of an open circuit: probes only"
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        failed = rows(storage, sa.select(t.refresh_ledger).where(t.refresh_ledger.c.status != "done"))
    assert [r for r in failed if r.status == LedgerStatus.FAILED] == []
    record(
        Row(
            "6b",
            "ESI answers 503 on every route for 12 s mid-step (embedded mode, stall timeout 6 s)",
            "an ESI outage",
            "circuit opens, probes only, the pause is not a stall, nothing fails, resumes at the first good probe",
            found.lost,
            found.duplicated,
            found.stale,
            f"{during} during the 12 s open circuit",
            round(recovery, 1),
        )
    )


def test_two_refreshes_started_at_the_same_moment_never_fetch_the_same_step(embedded_env: None) -> None:
    """Two "Materialize all" at once against one database: one waits for nothing and fails at once
    naming the run that holds the step; the other completes."""
    with embedded(SLOW) as (simulator, faults, storage, resources):
        barrier = threading.Barrier(2)

        def run() -> dg.ExecuteInProcessResult:
            barrier.wait()
            return materialize_all(resources)

        threads = [in_background(run) for _ in range(2)]
        for thread, _ in threads:
            thread.join(300)
        results = [outcome["result"] for _, outcome in threads]
        winners = [r for r in results if r.success]
        losers = [r for r in results if not r.success]
        assert len(winners) == 1 and len(losers) == 1, [failure_message(r) for r in losers]
        message = failure_message(losers[0])
        assert "already being refreshed by refresh " + winners[0].run_id in message, message
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        spans = {r: storage.ledger.step_spans(r.run_id) for r in results}
    assert [span.step for span in spans[losers[0]]] == [], "the second refresh fetched nothing"
    record(
        Row(
            "9",
            "two 'Materialize all' runs started at the same instant (barrier), one database",
            "a concurrent refresh",
            "one runs; the other fails at once naming the run holding the step; never both fetching",
            found.lost,
            found.duplicated,
            found.stale,
            f"{sum(faults.requests.values())} in all (one refresh's worth)",
            None,
        )
    )


def test_a_sigkilled_dagster_process_is_taken_over_and_its_fetches_reused(
    embedded_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`dagster asset materialize` SIGKILLed in the middle of the corporations step (an OOM kill):
    once its lease lapses (5 s here), a new run takes the step over, withdraws the dead run's
    unfinished entities with the reason, and completes, serving what the dead run fetched from the
    ESI cache."""
    monkeypatch.setenv("KILLREPORT_STEP_LEASE_SECONDS", "5")
    with embedded(SLOW) as (simulator, faults, storage, resources):
        url = storage.engine.url.render_as_string(hide_password=False)
        env = {
            **os.environ,
            "KILLREPORT_DATABASE_URL": url,
            "KILLREPORT_ESI_BASE_URL": simulator.url,
        }
        env.pop("DAGSTER_HOME", None)
        process = subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "killreport_assets", "--select", "*"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            under_way(storage, 100, timeout=300)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        killed = time.monotonic()
        lease = storage.leases.current()["corporations"]
        wait_for(
            lambda: (dt.datetime.now(dt.UTC) - lease.heartbeat_at).total_seconds() > 3,
            "the killed run's heartbeat to be 3 s old (a silent holder: waited for, not refused)",
            30,
        )
        dead = storage.ledger.latest_refresh(step="corporations")
        assert dead is not None and storage.ledger.pending_ids(dead, "corporations"), "killed mid-step"
        fetched_before = corporation_requests(faults)
        result = materialize_all(resources)
        recovery = time.monotonic() - killed
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        withdrawn = storage.ledger.progress(dead, "corporations").by_status.get(LedgerStatus.WITHDRAWN, 0)
        cached = storage.ledger.progress(result.run_id, "corporations").by_http_status.get("cache", 0)
    assert withdrawn > 0, "the dead run's unfinished entities say why they never finished"
    assert cached >= 100, "what the dead run fetched was served from the cache"
    record(
        Row(
            "10",
            "the `dagster asset materialize` process group SIGKILLed mid corporations step, then a new run",
            "an OOM kill of the run",
            "the new run takes the step over after the lease lapses (5 s), reuses what was fetched",
            found.lost,
            found.duplicated,
            found.stale,
            f"{fetched_before} corporation requests before the kill; {cached} served from the cache after",
            round(recovery, 1),
        )
    )


@pytest.mark.parametrize("mode", ["embedded", "rabbitmq"])
def test_a_postgresql_restart_in_the_middle_of_a_step_is_ridden_out(
    mode: str, embedded_env: None, tmp_path: Path
) -> None:
    """The application database (a server of the test's own) is stopped with a fast shutdown in the
    middle of the corporations step and started again 5 s later, as a package upgrade does: the step
    waits for it, workers stop taking jobs and hand theirs back without spending attempts, and the
    refresh completes in the same run."""
    with OwnedPostgres() as pg, faulty(SLOW) as (simulator, faults), ExitStack() as cleanup:
        storage = Storage.open(pg.url)
        cleanup.callback(storage.dispose)
        if mode == "rabbitmq":
            stack = cleanup.enter_context(RabbitStack(tmp_path, database_url=pg.url))
            worker = stack.start_worker(simulator.url, "--concurrency", "4")
            stack.wait_for_consumers("killreport.corporations", 1)
            resources = stack.resources(simulator.url)
        else:
            resources = refresh_resources(
                database_url=pg.url, esi_base_url=simulator.url, poll_interval_seconds=0.1
            )
        thread, outcome = in_background(lambda: materialize_all(resources))
        try:
            under_way(storage, 60)
            pg.stop()
            stopped = time.monotonic()
            wait_for(lambda: time.monotonic() - stopped >= 5, "5 s of database outage", 30, interval=0.5)
            pg.start()
            restarted = time.monotonic()
        finally:
            thread.join(300)
        recovery = time.monotonic() - restarted
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert len(result.get_step_failure_events()) == 0, "ridden out within the step, no step retry"
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        progress = storage.ledger.progress(result.run_id, "corporations")
        assert progress.failed == 0
        if mode == "rabbitmq":
            log = worker.log()
            assert "the database is unreachable" in log and "the database answers again" in log
            assert "dead-lettering" not in log
    record(
        Row(
            "4" + ("a" if mode == "embedded" else "b"),
            f"PostgreSQL (the test's own server) stopped -m fast for 5 s mid corporations step, {mode} mode",
            "a database restart",
            "the step waits for the database; workers pause consuming and hand jobs back; same run completes",
            found.lost,
            found.duplicated,
            found.stale,
            f"{corporation_requests(faults)} corporation requests for {progress.total} corporations",
            round(recovery, 1),
        )
    )


MALFORMED: dict[str, tuple[str, Any]] = {
    "wrong type": ("edit", lambda body: {**body, "member_count": "many"}),
    "missing field": ("edit", lambda body: {k: v for k, v in body.items() if k != "name"}),
    "not JSON": ("raw", b"<html><body>502 Bad Gateway</body></html>"),
    "truncated": ("raw", b'{"name": "Half an answer", "ticker": "HALF", "member_c'),
    "huge": ("raw", b'{"name": "Big", "ticker": "BIG", "description": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
}


def test_malformed_answers_fail_only_their_entity_with_the_reason(
    embedded_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five corporations answer 200 with a wrong type, a missing required field, an HTML page, a
    truncated body and a 2 MiB body: each fails with the reason, nothing partial is stored for
    it, and every other entity is refreshed."""
    monkeypatch.setenv("KILLREPORT_FAILURE_THRESHOLD", "0.05")
    with embedded(UNIVERSE) as (simulator, faults, storage, resources):
        members = sorted(simulator.universe.member_corporation_ids())
        broken = dict(zip(MALFORMED, members[3::50], strict=False))
        for name, corporation_id in broken.items():
            how, what = MALFORMED[name]
            path = CORPORATION.format(corporation_id)
            if how == "edit":
                faults.edits[path] = what
            else:
                faults.raw[path] = what
        result = materialize_all(resources)
        assert result.success, failure_message(result)
        failed = dict(storage.ledger.failures(result.run_id, "corporations"))
        assert_tables_match(storage, simulator.universe, stale=frozenset(broken.values()))
        stored_ids = {r.id for r in rows(storage, sa.select(t.corporations.c.id))}
        found = damage(storage, simulator.universe)
    assert set(failed) == set(broken.values())
    assert all("invalid ESI response" in (failed[i] or "") for i in broken.values()), failed
    assert "member_count" in (failed[broken["wrong type"]] or "") and "name" in (
        failed[broken["missing field"]] or ""
    )
    assert "byte limit" in (failed[broken["huge"]] or "")
    assert not stored_ids & set(broken.values()), "nothing partial is stored for a malformed answer"
    record(
        Row(
            "7",
            "200 answers with a wrong type, a missing field, HTML, a truncated body, a 2 MiB body (5 corporations)",
            "malformed ESI answers",
            "those 5 fail with the reason and are the 5 lost, by design; no partial row; the rest complete",
            found.lost,
            found.duplicated,
            found.stale,
            "1 each (a malformed 200 is not retried)",
            None,
        )
    )


def test_network_cuts_between_a_worker_and_the_broker_and_the_database_are_survived(
    stack: RabbitStack,
) -> None:
    """The worker reaches RabbitMQ and PostgreSQL through TCP proxies; mid-step each link is reset
    and refused for 3 s, first the broker's, then the database's; then the database link is held
    (a partition that heals: bytes wait, nothing resets) for 5 s, and both links get 200 ms of
    latency for 5 s. The worker reconnects to the broker, stops taking jobs while the database is
    away, waits out the partition, and the refresh completes."""
    database = sa.engine.make_url(stack.database_url)
    broker_host, broker_port = RABBITMQ_ADDRESS.split(":")
    with (
        faulty(LONG) as (simulator, faults),
        TcpProxy(broker_host, int(broker_port)) as broker_link,
        TcpProxy(database.host or "127.0.0.1", database.port or 5432) as database_link,
    ):
        assert stack.storage is not None
        storage = stack.storage
        env = {
            **stack.worker_env(simulator.url),
            "KILLREPORT_RABBITMQ_URL": stack.url.replace(RABBITMQ_ADDRESS, f"127.0.0.1:{broker_link.port}"),
            "KILLREPORT_DATABASE_URL": database.set(
                host="127.0.0.1", port=database_link.port
            ).render_as_string(hide_password=False),
        }
        worker = WorkerProcess(env, stack.worker_log("proxied"), ("--concurrency", "4"))
        stack.workers.append(worker)
        stack.wait_for_consumers("killreport.corporations", 1)
        thread, outcome = in_background(lambda: materialize_all(stack.resources(simulator.url)))
        try:
            for link, when in ((broker_link, 60), (database_link, 150)):
                under_way(storage, when)
                link.cut()
                cut = time.monotonic()
                wait_for(lambda cut=cut: time.monotonic() - cut >= 3, "3 s of a cut link", 30, interval=0.5)
                link.restore()
            under_way(storage, 200)
            database_link.hold()
            held = time.monotonic()
            wait_for(lambda: time.monotonic() - held >= 5, "5 s of a held link", 30, interval=0.5)
            database_link.release()
            broker_link.latency = database_link.latency = 0.2
            slow = time.monotonic()
            wait_for(lambda: time.monotonic() - slow >= 5, "5 s of latency", 30, interval=0.5)
            broker_link.latency = database_link.latency = 0.0
            assert pending(storage) > 0, "every fault landed in the middle of the step"
            restored = time.monotonic()
        finally:
            thread.join(300)
        recovery = time.monotonic() - restored
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        assert storage.ledger.progress(result.run_id, "corporations").failed == 0
        assert worker.stop() == 0, "stopped while its links still exist"
    log = worker.log()
    assert "reconnecting in" in log and "the database is unreachable" in log and "answers again" in log
    record(
        Row(
            "5",
            "worker↔RabbitMQ, then worker↔PostgreSQL links reset and refused for 3 s each, the database link "
            "held 5 s, both links +200 ms for 5 s (TCP proxies), mid-step",
            "network cuts",
            "the worker reconnects to the broker, pauses while the database is away, resumes; nothing lost",
            found.lost,
            found.duplicated,
            found.stale,
            f"{corporation_requests(faults)} corporation requests for 600 corporations",
            round(recovery, 1),
        )
    )


def test_a_worker_frozen_past_its_heartbeat_loses_nothing(stack: RabbitStack) -> None:
    """One of two workers is SIGSTOPped for longer than its 2 s heartbeat in the middle of the step:
    the broker drops it and hands its jobs to the other; once continued, it reconnects, its stale
    acknowledgements are skipped, and every corporation is stored once."""
    with faulty(LONG) as (simulator, faults):
        assert stack.storage is not None
        storage = stack.storage
        env = {**stack.worker_env(simulator.url), "KILLREPORT_RABBITMQ_URL": stack.url + "?heartbeat=2"}
        frozen = WorkerProcess(env, stack.worker_log("frozen"), ("--concurrency", "2"))
        stack.workers.append(frozen)
        stack.start_worker(simulator.url, "--concurrency", "2")
        stack.wait_for_consumers("killreport.corporations", 2)
        thread, outcome = in_background(lambda: materialize_all(stack.resources(simulator.url)))
        try:
            under_way(storage, 60)
            frozen.process.send_signal(signal.SIGSTOP)
            try:
                stack.wait_for_consumers("killreport.corporations", 1, timeout=60)
                assert pending(storage) > 0, "the broker dropped it in the middle of the step"
            finally:
                frozen.process.send_signal(signal.SIGCONT)
            continued = time.monotonic()
        finally:
            thread.join(300)
        recovery = time.monotonic() - continued
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        stack.wait_for_consumers("killreport.corporations", 2)
    assert "reconnecting in" in frozen.log()
    record(
        Row(
            "2",
            "one of two workers SIGSTOPped mid-step until the broker dropped it (2 s heartbeat), then SIGCONT",
            "a frozen worker",
            "its jobs go to the other worker; it reconnects; its late acks are skipped; nothing lost or duplicated",
            found.lost,
            found.duplicated,
            found.stale,
            f"{corporation_requests(faults)} corporation requests for 600 corporations",
            round(recovery, 1),
        )
    )


def test_an_esi_storm_of_faults_limits_downtime_latency_and_resets_loses_nothing(stack: RabbitStack) -> None:
    """RabbitMQ mode, one worker reaching ESI through a TCP proxy, while 20% of answers are 5xx:
    mid-step the error limit is exhausted (420s), ESI goes down for 6 s (503 on every route), answers
    take 10 s for 12 s, and every connection is reset once. Every corporation ends stored and none
    failed, within its 10-request budget."""
    storm = SimulatorConfig(
        seed=37, alliances=80, corporations=600, latency_ms=100, fault_rate=0.2, error_window=10
    )
    with faulty(storm) as (simulator, faults):
        assert stack.storage is not None
        storage = stack.storage
        host, port = simulator.url.removeprefix("http://").split(":")
        with TcpProxy(host, int(port)) as esi_link:
            stack.start_worker(f"http://127.0.0.1:{esi_link.port}", "--concurrency", "4")
            stack.wait_for_consumers("killreport.corporations", 1)
            thread, outcome = in_background(lambda: materialize_all(stack.resources(simulator.url)))

            def hold(seconds: float) -> None:
                since = time.monotonic()
                wait_for(
                    lambda: time.monotonic() - since >= seconds, f"{seconds} s", seconds + 30, interval=0.2
                )

            try:
                under_way(storage, 60, timeout=180)
                simulator.exhaust_error_limit()
                under_way(storage, 180, timeout=180)
                simulator.force_downtime(6)
                under_way(storage, 300, timeout=180)
                simulator.configure(latency_ms=10_000)
                hold(12)
                simulator.configure(latency_ms=100)
                under_way(storage, 420, timeout=180)
                esi_link.cut()
                hold(1)
                esi_link.restore()
                calm = time.monotonic()
            finally:
                thread.join(600)
            recovery = time.monotonic() - calm
        result = outcome["result"]
        assert result.success, failure_message(result)
        progress = storage.ledger.progress(result.run_id, "corporations")
        assert progress.failed == 0, storage.ledger.failures(result.run_id, "corporations")
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        spent = max(r.attempts for r in rows(storage, sa.select(t.refresh_ledger)))
        stats = simulator.stats()
    assert spent <= 10
    record(
        Row(
            "6c",
            "20% 5xx throughout; mid-step: error limit exhausted (420s), 6 s of 503 everywhere, 10 s latency "
            "for 12 s, every worker→ESI connection reset (RabbitMQ mode)",
            "an ESI storm",
            "no entity fails or exceeds 10 requests; the 420 window and the outage are waited out",
            found.lost,
            found.duplicated,
            found.stale,
            f"{corporation_requests(faults)} corporation requests for 600 corporations "
            f"({stats['error_limited']} answered 420; at most {spent} for one entity)",
            round(recovery, 1),
        )
    )


GARBAGE = (
    b"\x00not a job\xff",
    b'{"v": 99, "refresh_id": "x", "kind": "corporation", "id": 1}',
    b"[]",
    b"{}",
)


def test_garbage_on_every_queue_and_invalid_enqueue_ids_stop_nothing(stack: RabbitStack) -> None:
    """Undecodable bodies, an unknown schema version and shapeless JSON on every job queue; IDs that
    cannot be ESI IDs given to `killreport enqueue`: each message is dead-lettered with its body
    logged, the command refuses with a clear error and queues nothing, and a refresh then runs clean."""
    lanes = ("alliances", "alliance_corporations", "corporations", "enrichment")
    with faulty(UNIVERSE) as (simulator, faults):
        assert stack.storage is not None
        worker = stack.start_worker(simulator.url, "--concurrency", "4")
        stack.wait_for_consumers("killreport.corporations", 1)
        connection = pika.BlockingConnection(pika.URLParameters(stack.url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for lane in lanes:
                for body in GARBAGE:
                    channel.basic_publish(
                        "", f"killreport.{lane}", body, pika.BasicProperties(delivery_mode=2)
                    )
        finally:
            connection.close()
        env = stack.worker_env(simulator.url)
        refused = [
            subprocess.run(
                [sys.executable, "-m", "killreport_assets.cli", "enqueue", "corporation", *ids],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for ids in (["0"], ["-5"], ["abc"], ["98000001", "9223372036854775808"])
        ]
        wait_for(
            lambda: all(stack.queue(f"killreport.{lane}.dead")[0] == len(GARBAGE) for lane in lanes),
            "every garbage message dead-lettered",
        )
        result = materialize_all(stack.resources(simulator.url))
        assert result.success, failure_message(result)
        assert_tables_match(stack.storage, simulator.universe)
        found = damage(stack.storage, simulator.universe)
        enrichment = stack.queue("killreport.enrichment")[0]
    for done in refused:
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "expected an ESI ID (a positive 64-bit integer)" in done.stderr.splitlines()[-1]
    assert enrichment == 0, "nothing was queued by a refused enqueue"
    assert worker.log().count("dead-lettering a message") == len(lanes) * len(GARBAGE)
    assert worker.process.poll() is None
    record(
        Row(
            "8",
            "4 garbage/unknown-version/shapeless bodies on each of the 4 job queues; `killreport enqueue` "
            "with 0, -5, abc and 2^63",
            "bad messages and input",
            "each message dead-lettered with its body logged; enqueue exits 2 naming the bad ID, queues "
            "nothing; the refresh runs clean",
            found.lost,
            found.duplicated,
            found.stale,
            f"{sum(faults.requests.values())} (one clean refresh)",
            None,
        )
    )


def test_a_two_hour_esi_outage_compressed_in_time_costs_probes_not_attempts(stack: RabbitStack) -> None:
    """ESI answers 503 on every route for 60 s in the middle of the corporations step, to a worker
    whose circuit-breaker waits are 120× shorter (compressed_worker.py): for it, a two-hour outage.
    Held jobs go back to the queue without spending an attempt, the worker probes instead of burning
    the error budget, and every corporation is stored when ESI returns."""
    with faulty(LONG) as (simulator, faults):
        assert stack.storage is not None
        storage = stack.storage
        worker = stack.start_worker(
            simulator.url, "--concurrency", "4", module="killreport_assets_tests.compressed_worker"
        )
        stack.wait_for_consumers("killreport.corporations", 1)
        thread, outcome = in_background(lambda: materialize_all(stack.resources(simulator.url)))
        try:
            under_way(storage, 100)
            faults.outage = 503
            before = sum(faults.requests.values())
            began = time.monotonic()
            wait_for(lambda: time.monotonic() - began >= 60, "60 s of outage", 90, interval=0.5)
            during = sum(faults.requests.values()) - before
            assert pending(storage) > 0, "the outage lasted past the middle of the step"
            faults.outage = None
            ended = time.monotonic()
        finally:
            thread.join(600)
        recovery = time.monotonic() - ended
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        progress = storage.ledger.progress(result.run_id, "corporations")
        spent = max(r.attempts for r in rows(storage, sa.select(t.refresh_ledger)))
    assert progress.failed == 0 and spent <= 10
    assert "handed back" in worker.log(), "held jobs went back to the queue"
    # Without the breaker every job would spend its 10 requests: 4 threads at 1 request per backoff.
    assert during < 60 * 2 * 4, f"{during} requests in the outage"
    record(
        Row(
            "6d",
            "ESI 503 on every route for 60 s mid-step, seen by a worker on 120× compressed time (a two-hour "
            "outage: probes 5 s→60 s, jobs held at most 120 s)",
            "a two-hour ESI outage",
            "the circuit holds all requests and probes; held jobs handed back without attempts; all stored after",
            found.lost,
            found.duplicated,
            found.stale,
            f"{during} during the outage (probes and the requests in flight when it began); at most {spent} "
            "for one entity",
            round(recovery, 1),
        )
    )


def test_esis_daily_downtime_pauses_without_attempts_and_is_not_a_stall(
    embedded_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KILLREPORT_ESI_DOWNTIME covers now and ESI answers 503 everywhere for 20 s (the simulator's
    downtime), with a stall timeout of 10 s: every request waits on the downtime probe (every
    30 s), no attempt is spent on a downtime 503, the step does not count the pause as a stall, and
    work resumes at the first probe after ESI is back, long before the window ends."""
    now = dt.datetime.now(dt.UTC)
    window = f"{now - dt.timedelta(minutes=1):%H:%M}-{now + dt.timedelta(minutes=10):%H:%M}"
    monkeypatch.setenv("KILLREPORT_ESI_DOWNTIME", window)
    monkeypatch.setenv("KILLREPORT_STALL_TIMEOUT_SECONDS", "10")
    with embedded(LONG) as (simulator, faults, storage, resources):
        thread, outcome = in_background(lambda: materialize_all(resources))
        try:
            under_way(storage, 100)
            simulator.force_downtime(20)
            ended = time.monotonic() + 20
        finally:
            thread.join(300)
        recovery = time.monotonic() - ended
        result = outcome["result"]
        assert result.success, failure_message(result)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
        attempts = {
            r.attempts
            for r in rows(
                storage, sa.select(t.refresh_ledger).where(t.refresh_ledger.c.refresh_id == result.run_id)
            )
        }
    assert attempts <= {0, 1}, f"a downtime 503 spent attempts: {attempts}"
    assert recovery < 60, "resumed at a probe, not at the end of the 11-minute window"
    record(
        Row(
            "6e",
            f"ESI's daily downtime: KILLREPORT_ESI_DOWNTIME={window} (11 min) and 503 everywhere for 20 s "
            "mid-step (embedded mode, stall timeout 10 s)",
            "the daily downtime",
            "all requests wait on 30 s probes, no attempt spent, no stall; resumes at the first good probe",
            found.lost,
            found.duplicated,
            found.stale,
            f"{sum(faults.requests.values())} in all; every entity 1 request",
            round(recovery, 1),
        )
    )


def test_two_dagster_asset_materialize_commands_at_once_never_fetch_the_same_step(tmp_path: Path) -> None:
    """`dagster asset materialize` bypasses any run queue: two of them started together against one
    database (each with its own ephemeral Dagster instance, so no tag limit or pool can see the
    other): one refreshes, the other exits non-zero naming the run that holds the step."""
    # Slow answers (0.5 s): the alliances step alone takes seconds, so the two surely overlap.
    with embedded(SimulatorConfig(seed=29, alliances=200, corporations=600, latency_ms=500)) as (
        simulator,
        faults,
        storage,
        resources,
    ):
        env = {
            **os.environ,
            "KILLREPORT_DATABASE_URL": storage.engine.url.render_as_string(hide_password=False),
            "KILLREPORT_ESI_BASE_URL": simulator.url,
            "KILLREPORT_ESI_MAX_RPS": TEST_ENV["KILLREPORT_ESI_MAX_RPS"],
        }
        env.pop("DAGSTER_HOME", None)
        command = [str(BIN / "dagster"), "asset", "materialize", "-m", "killreport_assets", "--select", "*"]
        runs = [
            subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        codes = sorted(run.returncode for run in runs)
        assert_tables_match(storage, simulator.universe)
        found = damage(storage, simulator.universe)
    assert codes[0] == 0 and codes[1] != 0, codes
    loser = next(out for run, out in zip(runs, outputs, strict=True) if run.returncode != 0)
    assert "is already being refreshed by refresh" in loser and "Dagster run" in loser
    record(
        Row(
            "9b",
            "two `dagster asset materialize --select '*'` processes started together, one database, no "
            "DAGSTER_HOME (no run queue, no pool)",
            "a concurrent CLI refresh",
            "one refreshes; the other exits non-zero naming the run that holds the step",
            found.lost,
            found.duplicated,
            found.stale,
            f"{sum(faults.requests.values())} in all (one refresh's worth)",
            None,
        )
    )
