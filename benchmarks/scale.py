"""Benchmarks e and f: ten times the real universe (36,160 alliances, ~200,000 corporations).

RabbitMQ mode with 2 `killreport worker` processes, no latency, a budget the machine cannot reach
(1000 req/s), on its own simulated ESI on loopback and a fresh PostgreSQL database. Prints one JSON
line: whether it completed, the peak RSS of the Dagster command and of each worker (target: at most
1.5 × the real-size figure: run with `--size 1` for that), the snapshot steps' times (f: each under
5 s), and the median time of each query the step's wait loop makes, against the finished ledger of
the largest step (target: at 10× no more than 2 × the 1× time).

    python -m benchmarks.scale --size 10
    python -m benchmarks.scale --size 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import deployment, emit, materialize, simulator, universe
from killreport_assets.storage import Storage

BUDGET = 1000.0


def median_ms(query: Callable[[], object], times: int = 21) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        query()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def wait_loop_queries(storage: Storage) -> dict[str, float]:
    """What `steps.wait_for_step` asks the database each poll, timed on the corporations step."""
    refresh_id = storage.ledger.latest_refresh(step="corporations")
    assert refresh_id is not None
    storage.leases.acquire("benchmark", refresh_id, "benchmark", 60.0)
    return {
        "lease_heartbeat": median_ms(lambda: storage.leases.heartbeat("benchmark", refresh_id)),
        "ledger_pulse": median_ms(lambda: storage.ledger.pulse(refresh_id, "corporations")),
        "esi_pauses": median_ms(storage.pauses.active),
        # not every poll: once per progress interval (30 s) and at the end
        "ledger_progress": median_ms(lambda: storage.ledger.progress(refresh_id, "corporations")),
        "latest_refresh": median_ms(lambda: storage.ledger.latest_refresh(step="corporations")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with simulator(universe(args.size)) as esi, deployment(esi, BUDGET, args.workers) as (env, workers, url):
        run = materialize(env, esi, workers)
        storage = Storage.open(url)
        try:
            queries = wait_loop_queries(storage)
            rows = storage.reports.row_counts()
        finally:
            storage.dispose()
    emit(
        {
            "benchmark": "e",
            "mode": "rabbitmq",
            "workers": args.workers,
            "size": args.size,
            "exit_code": run.exit_code,
            "requests": run.esi["requests"],
            "wall_seconds": run.wall_seconds,
            "rows": rows,
            "dagster_peak_rss_mb": run.dagster_peak_rss_mb,
            "worker_peak_rss_mb": run.worker_peak_rss_mb,
            "snapshot_seconds": {
                step: run.step_seconds.get(step) for step in ("alliance_snapshot", "corporation_snapshot")
            },
            "step_seconds": run.step_seconds,
            "wait_loop_query_ms": queries,
            "requests_per_second": run.timeline(),
        },
        args.out,
    )
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
