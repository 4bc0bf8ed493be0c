"""Benchmarks a, b, g: a budget-bound refresh of the real-size universe.

Starts its own simulated ESI on loopback (latency 50 ± 20 ms unless told), a fresh PostgreSQL
database, and in RabbitMQ mode `--workers` `killreport worker` processes, every process given the
same `KILLREPORT_ESI_MAX_RPS`. Prints one JSON line: requests, wall time, the ideal
(requests ÷ budget), efficiency (ideal ÷ wall; target ≥ 0.97), the peak 10 s request rate
(target ≤ 1.02 × budget), peak RSS, step times, and ESI's requests per second over the run.

    python -m benchmarks.budget --rps 100                 # embedded
    python -m benchmarks.budget --rps 100 --workers 2     # RabbitMQ mode, 2 workers
    python -m benchmarks.budget --rps 50 --latency-ms 200 --jitter-ms 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.harness import (
    ORIGINAL_SECONDS,
    deployment,
    efficiency,
    emit,
    materialize,
    simulator,
    universe,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rps", type=float, default=100.0, help="KILLREPORT_ESI_MAX_RPS (default 100)")
    parser.add_argument("--workers", type=int, default=0, help="RabbitMQ mode with N workers (0: embedded)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--size", type=float, default=1.0, help="universe size, times the real one")
    parser.add_argument("--name", default="a", help="the benchmark's letter in docs/benchmarks.md")
    parser.add_argument("--out", type=Path, help="also append the JSON line to this file")
    args = parser.parse_args(argv)

    config = universe(args.size, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms)
    with simulator(config) as esi, deployment(esi, args.rps, args.workers) as (env, workers, _):
        run = materialize(env, esi, workers)
    requests = run.esi["requests"]
    emit(
        {
            "benchmark": args.name,
            "mode": "rabbitmq" if args.workers else "embedded",
            "workers": args.workers,
            "budget": args.rps,
            "latency_ms": args.latency_ms,
            "jitter_ms": args.jitter_ms,
            "size": args.size,
            "exit_code": run.exit_code,
            "requests": requests,
            "wall_seconds": run.wall_seconds,
            "ideal_seconds": round(requests / args.rps, 1),
            "efficiency": efficiency(requests, args.rps, run.wall_seconds),
            "peak_10s_rate": run.esi["peak_requests_in_10s"] / 10,
            "original_seconds_same_requests": round(ORIGINAL_SECONDS * requests / 25_000),
            "answers": run.esi["by_route"],
            "step_seconds": run.step_seconds,
            "dagster_peak_rss_mb": run.dagster_peak_rss_mb,
            "worker_peak_rss_mb": run.worker_peak_rss_mb,
            "requests_per_second": run.timeline(),
        },
        args.out,
    )
    if run.exit_code != 0:
        print(run.stderr_tail, file=sys.stderr)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
