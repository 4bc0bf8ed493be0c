"""Benchmark c: what the pipeline costs beyond ESI itself.

One run, no latency and no budget (`KILLREPORT_ESI_MAX_RPS` 100000), on its own simulated ESI on
loopback: first the full refresh (embedded, `dagster asset materialize`), then a bare fetch of the
same entities (the alliance list, each alliance and its member list, each corporation) with the
same `EsiClient`, the same concurrency (the embedded pool's threads) and nothing else: no
database, no ledger, no Dagster. Prints one JSON line with both rates and pipeline ÷ bare
(target ≥ 0.80).

    python -m benchmarks.overhead [--size 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import deployment, emit, materialize, simulator, universe
from killreport_assets.esi import EsiClient, EsiConfig, EsiGovernor
from killreport_assets.esi.config import concurrency_for

UNBOUNDED = 100_000.0
THREADS = concurrency_for(UNBOUNDED)  # the embedded pool's size at this budget


def bare_fetch(url: str) -> tuple[int, float]:
    """Fetch what the refresh fetches, with the client alone; (requests, seconds)."""
    config = EsiConfig(
        base_url=url, contact="benchmark", max_requests_per_second=UNBOUNDED, max_concurrency=THREADS
    )
    started = time.monotonic()
    with EsiClient(config, governor=EsiGovernor(config)) as client, ThreadPoolExecutor(THREADS) as pool:
        alliance_ids = client.alliance_ids().value or []
        list(pool.map(client.alliance, alliance_ids))
        members = list(pool.map(client.alliance_corporations, alliance_ids))
        corporation_ids = sorted({c for result in members for c in result.value or []})
        list(pool.map(client.corporation, corporation_ids))
    requests = 1 + 2 * len(alliance_ids) + len(corporation_ids)
    return requests, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with simulator(universe(args.size)) as esi:
        with deployment(esi, UNBOUNDED, 0) as (env, _, _):
            run = materialize(env, esi)
        esi.reset_stats()
        bare_requests, bare_seconds = bare_fetch(esi.url)
        bare_answered = esi.stats()["requests"]
    pipeline_rate = run.esi["requests"] / run.wall_seconds
    esi_steps = sum(
        run.step_seconds.get(s, 0.0) for s in ("alliances", "alliance_corporations", "corporations")
    )
    emit(
        {
            "benchmark": "c",
            "mode": "embedded",
            "size": args.size,
            "threads": THREADS,
            "exit_code": run.exit_code,
            "pipeline_requests": run.esi["requests"],
            "pipeline_wall_seconds": run.wall_seconds,
            "pipeline_esi_step_seconds": round(esi_steps, 1),
            "pipeline_rate": round(pipeline_rate, 1),
            "pipeline_step_rate": round(run.esi["requests"] / esi_steps, 1) if esi_steps else None,
            "bare_requests": bare_answered,
            "bare_seconds": round(bare_seconds, 1),
            "bare_rate": round(bare_answered / bare_seconds, 1),
            "ratio": round(pipeline_rate / (bare_answered / bare_seconds), 3),
            "step_ratio": round(run.esi["requests"] / esi_steps / (bare_answered / bare_seconds), 3)
            if esi_steps
            else None,
            "dagster_peak_rss_mb": run.dagster_peak_rss_mb,
            "requests_per_second": run.timeline(),
        },
        args.out,
    )
    assert bare_requests == bare_answered, (bare_requests, bare_answered)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
