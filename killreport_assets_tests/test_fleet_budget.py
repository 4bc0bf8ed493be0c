"""One ESI budget for the whole fleet: three `killreport worker` processes and the Dagster run,
all started with the same settings, keep `KILLREPORT_ESI_MAX_RPS` and ESI's error budget together,
against a simulator that counts requests per second and errors per error-limit window."""

from __future__ import annotations

import re

import pytest

from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets_tests.rabbit_support import RabbitStack
from killreport_assets_tests.refresh_support import assert_tables_match, failure_message, materialize_all

WORKERS = 3
FINISHED = re.compile(r"(\d+) job\(s\) finished")


def refresh_with_three_workers(stack: RabbitStack, simulator: SimulatorServer) -> float:
    """Materialize all with three workers at the default concurrency; the seconds it took."""
    for _ in range(WORKERS):
        stack.start_worker(simulator.url)
    stack.wait_for_consumers("killreport.corporations", WORKERS)
    simulator.reset_stats()
    result = materialize_all(stack.resources(simulator.url))
    assert result.success, failure_message(result)
    assert stack.storage is not None
    assert_tables_match(stack.storage, simulator.universe)
    for worker in stack.workers:
        assert sum(int(n) for n in FINISHED.findall(worker.log())) > 0, f"{worker.log_path.name} did no job"
    stats = simulator.stats()
    seconds = [int(second) for second in stats["requests_by_second"]]
    return max(seconds) - min(seconds) + 1


def test_three_workers_given_the_same_budget_keep_it_together(
    stack: RabbitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process is told 30 requests/s, as an operator would set it for the deployment: no 10 s
    window sees more than 1.02 × 300 requests, and the refresh takes as long as the budget says
    (three processes each pacing itself would go at 90/s and finish in a third of it)."""
    monkeypatch.setenv("KILLREPORT_ESI_MAX_RPS", "30")
    with SimulatorServer(
        SimulatorConfig(seed=53, alliances=40, corporations=400, latency_ms=50)
    ) as simulator:
        seconds = refresh_with_three_workers(stack, simulator)
        stats = simulator.stats()
    assert stats["requests"] > 400
    assert stats["peak_requests_in_10s"] <= 1.02 * 300, stats["peak_requests_in_10s"]
    assert seconds >= stats["requests"] / 30 * 0.95, (seconds, stats["requests"])


def test_three_workers_in_a_5xx_storm_keep_the_ip_s_error_budget_above_the_reserve(
    stack: RabbitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30% of answers are 5xx, each takes 500 ms, ESI allows 100 errors per 10 s window, and three
    workers at concurrency 20 could put 60 requests on the wire: with a per-process margin (the
    old rule) the IP's budget reached 0 and everyone got 420s. Sharing it, the fleet stops at the
    reserve (10) in every window, no request is answered 420, and nothing is lost."""
    monkeypatch.setenv("KILLREPORT_ESI_MAX_RPS", "100")
    storm = SimulatorConfig(
        seed=59, alliances=40, corporations=400, latency_ms=500, fault_rate=0.3, error_window=10
    )
    with SimulatorServer(storm) as simulator:
        refresh_with_three_workers(stack, simulator)
        stats = simulator.stats()
    assert stats["errors"] > 100, "the storm spent more than one window's budget"
    assert stats["error_limited"] == 0
    assert stats["lowest_error_remain"] >= 10, stats["lowest_error_remain"]
    assert stats["max_errors_in_a_window"] <= 90
