"""The refresh in RabbitMQ mode, with `killreport worker` subprocesses, against the real RabbitMQ and
PostgreSQL: the two-day scenario ends with the same tables as embedded mode, and a SIGKILLed worker
or a broker restart in the middle of a step loses nothing and duplicates nothing."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa

from killreport_assets.jobs.gate import ENTITY_REQUEST_BUDGET
from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.db import rows
from killreport_assets_tests.rabbit_support import (
    RabbitStack,
    rabbitmqctl,
    wait_for,
)
from killreport_assets_tests.refresh_support import (
    assert_tables_match,
    expire_cache,
    materialize_all,
    table_dump,
)
from killreport_assets_tests.reliability import Row, damage, record
from killreport_assets_tests.test_refresh import UNIVERSE, NightClock

# Columns set to "now" by a run: compared by which run set them, not by their value.
RUN_TIME_COLUMNS = frozenset(
    {"created_at", "updated_at", "closed_at", "confirmed_at", "first_seen_at", "observed_at"}
)


class Runs:
    """The runs of one mode, so tables can be compared by which run wrote what."""

    def __init__(self, resource: Mapping[str, Any]) -> None:
        self.resource = resource
        self.windows: list[tuple[dt.datetime, dt.datetime]] = []
        self.run_ids: list[str] = []

    def materialize(self) -> dg.ExecuteInProcessResult:
        started = dt.datetime.now(dt.UTC)
        result = materialize_all(self.resource)
        self.windows.append((started, dt.datetime.now(dt.UTC)))
        self.run_ids.append(result.run_id)
        assert result.success
        return result

    def run_of(self, value: Any) -> Any:
        if isinstance(value, str):
            return f"run {self.run_ids.index(value)}"
        for index, (start, end) in enumerate(self.windows):
            if start <= value <= end:
                return f"run {index}"
        raise AssertionError(f"{value} was written outside every run")

    def dump(self, storage: Storage) -> dict[str, list[tuple]]:
        """`table_dump` with run-time values replaced by the run that set them, history ids dropped."""
        dump = {}
        for name, table_rows in table_dump(storage).items():
            normalised = []
            for row in table_rows:
                values = dict(row._mapping)
                if name == "alliance_membership_history":
                    del values["id"]
                for column, value in values.items():
                    if value is not None and (column in RUN_TIME_COLUMNS or column == "refresh_id"):
                        values[column] = self.run_of(value)
                normalised.append(tuple(sorted(values.items())))
            dump[name] = sorted(normalised, key=repr)
        return dump


def test_two_days_with_two_workers_end_with_the_same_tables_as_embedded_mode(stack: RabbitStack) -> None:
    clock = NightClock()
    with SimulatorServer(UNIVERSE, clock=clock) as simulator, postgres_database() as embedded_url:
        for _ in range(2):
            stack.start_worker(simulator.url, "--concurrency", "8")
        stack.wait_for_consumers("killreport.corporations", 2)
        rabbit = Runs(stack.resources(simulator.url))
        embedded = Runs(
            refresh_resources(
                database_url=embedded_url, esi_base_url=simulator.url, poll_interval_seconds=0.05
            )
        )
        embedded_storage = Storage.open(embedded_url)

        def night(check: Callable[[Runs], None] = lambda runs: None) -> None:
            for runs in (embedded, rabbit):
                simulator.reset_stats()
                runs.materialize()
                check(runs)
            assert rabbit.dump(stack.storage) == embedded.dump(embedded_storage)

        night()
        assert_tables_match(stack.storage, simulator.universe)
        day0 = simulator.universe

        def nothing_requested(runs: Runs) -> None:
            assert simulator.stats()["requests"] == 0, (runs is rabbit, simulator.stats())

        night(nothing_requested)  # same day: everything fresh in the cache

        day1 = simulator.set_day(1)
        poison = min(set(day1.member_corporation_ids()) & set(day0.member_corporation_ids()))
        simulator.configure(poison_corporations=[poison])
        clock.offset += 24 * 3600
        expire_cache(stack.storage)
        expire_cache(embedded_storage)
        night()
        assert_tables_match(stack.storage, day1, stale=frozenset({poison}))

        ledger = t.refresh_ledger
        row = rows(
            stack.storage,
            sa.select(ledger).where(ledger.c.refresh_id == rabbit.run_ids[-1], ledger.c.entity_id == poison),
        )[0]
        assert (row.status, row.http_status) == ("failed", 500)
        assert row.attempts == ENTITY_REQUEST_BUDGET and "gave up after 3 attempts" in row.last_error
        embedded_storage.dispose()
    for worker in stack.workers:
        assert "Traceback" not in worker.log(), worker.log_path


def _refresh_in_background(resource: Mapping[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=materialize_all(resource)))
    thread.start()
    return thread, outcome


def _record(
    key: str,
    injected: str,
    scenario: str,
    expected: str,
    stack: RabbitStack,
    simulator: SimulatorServer,
    recovery: float,
) -> None:
    assert stack.storage is not None
    found = damage(stack.storage, simulator.universe)
    record(
        Row(
            key,
            injected,
            scenario,
            expected,
            found.lost,
            found.duplicated,
            found.stale,
            "–",
            round(recovery, 1),
        )
    )


def _assert_every_corporation_once(stack: RabbitStack, simulator: SimulatorServer, run_id: str) -> None:
    assert_tables_match(stack.storage, simulator.universe)
    progress = stack.progress("corporations", run_id)
    members = set(simulator.universe.member_corporation_ids())
    assert progress.total == len(members) and progress.pending == 0 and progress.failed == 0
    assert {row.id for row in rows(stack.storage, sa.select(t.corporations.c.id))} == members
    for lane in ("alliances", "alliance_corporations", "corporations"):
        assert stack.queue(f"killreport.{lane}")[0] == 0
        assert stack.queue(f"killreport.{lane}.dead")[0] == 0


SLOW_UNIVERSE = SimulatorConfig(seed=31, alliances=80, corporations=400, latency_ms=50)


def test_workers_killed_or_stopped_in_the_middle_of_the_corporations_step_lose_nothing(
    stack: RabbitStack,
) -> None:
    """Three workers SIGKILLed one after the other (at 60, 120 and 180 corporations), a fourth
    stopped with SIGTERM: every corporation is stored once, by the survivor and the stopping one."""
    with SimulatorServer(SLOW_UNIVERSE) as simulator:
        *doomed, stopped, survivor = (
            stack.start_worker(simulator.url, "--concurrency", "2") for _ in range(5)
        )
        stack.wait_for_consumers("killreport.corporations", 5)
        thread, outcome = _refresh_in_background(stack.resources(simulator.url))
        try:
            for worker, when in zip(doomed, (60, 120, 180), strict=True):
                wait_for(
                    lambda when=when: stack.progress("corporations").finished >= when,
                    f"{when} corporations finished",
                )
                worker.kill()
            assert stopped.stop() == 0, "SIGTERM: finish the in-flight jobs, exit 0"
            assert stack.progress("corporations").pending > 100, "all left in the middle of the step"
            faulted = time.monotonic()
        finally:
            thread.join(300)
        result = outcome["result"]
        assert result.success
        _assert_every_corporation_once(stack, simulator, result.run_id)
        _record(
            "1",
            "three of five workers SIGKILLed one after another, a fourth stopped with SIGTERM, mid "
            "corporations step",
            "worker processes dying",
            "unacked jobs redelivered to the survivors; every corporation stored once",
            stack,
            simulator,
            time.monotonic() - faulted,
        )
    # RabbitMQ hands the killed workers' unacked jobs to whichever consumer it picks, the stopping one
    # included, which may return one again ("redelivery 2").
    logs = survivor.log() + stopped.log()
    assert re.search(r"redelivery [123]\b", logs), "the killed workers' unacked jobs were redelivered"
    assert "returning" not in stopped.log(), "the stopped worker finished its jobs instead of returning them"


def test_a_broker_restart_in_the_middle_of_a_step_is_survived(stack: RabbitStack) -> None:
    with SimulatorServer(SLOW_UNIVERSE) as simulator:
        workers = [stack.start_worker(simulator.url, "--concurrency", "2") for _ in range(2)]
        stack.wait_for_consumers("killreport.corporations", 2)
        thread, outcome = _refresh_in_background(stack.resources(simulator.url))
        try:
            wait_for(
                lambda: stack.progress("corporations").finished >= 60, "the corporations step to be under way"
            )
            rabbitmqctl("stop_app")
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
            assert stack.progress("corporations").pending > 0, "restarted in the middle of the step"
            faulted = time.monotonic()
        finally:
            thread.join(300)
        result = outcome["result"]
        assert result.success
        _assert_every_corporation_once(stack, simulator, result.run_id)
        _record(
            "3",
            "`rabbitmqctl stop_app` + `start_app` of the broker mid corporations step (2 workers)",
            "a broker restart",
            "workers and the run reconnect; nothing lost or duplicated",
            stack,
            simulator,
            time.monotonic() - faulted,
        )
    for worker in workers:
        assert "reconnecting in" in worker.log()
