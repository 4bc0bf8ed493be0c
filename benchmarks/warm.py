"""Benchmark d: the warm re-run.

Two refreshes of an unchanged universe on one database (embedded, budget 100 req/s, latency
50 ± 20 ms, its own simulated ESI on loopback): the second after every cached answer's TTL has
passed, so every entity is revalidated with If-None-Match. Prints one JSON line: the share answered
304 (target ≥ 95%), the rows the second refresh inserted, updated or deleted in each table
(PostgreSQL's own counters; target: zero in the tables of unchanged data), and both wall times.

    python -m benchmarks.warm [--size 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import sqlalchemy as sa

from benchmarks.harness import deployment, efficiency, emit, materialize, simulator, universe
from killreport_assets.storage import Storage

# The tables of unchanged data: what a warm night must not rewrite. Snapshots are new rows by
# design (one per day), the ledger and the ESI cache are the refresh's own bookkeeping.
DATA_TABLES = ("alliances", "alliance_corporations", "corporations", "alliance_membership_history")


def row_writes(url: str) -> dict[str, int]:
    """Rows inserted + updated + deleted so far, per table, by PostgreSQL's statistics."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            found = conn.execute(
                sa.text("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
            )
            return {name: int(count) for name, count in found}
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=float, default=1.0)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    config = universe(args.size, latency_ms=50, jitter_ms=20)
    with simulator(config) as esi, deployment(esi, args.rps, 0) as (env, _, url):
        cold = materialize(env, esi)
        storage = Storage.open(url)
        storage.cache.expire_all(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))  # the TTL passed
        storage.dispose()
        before = row_writes(url)
        warm = materialize(env, esi)
        after = row_writes(url)
    writes = {name: after.get(name, 0) - before.get(name, 0) for name in sorted(after)}
    requests = warm.esi["requests"]
    emit(
        {
            "benchmark": "d",
            "mode": "embedded",
            "size": args.size,
            "budget": args.rps,
            "exit_code": max(cold.exit_code, warm.exit_code),
            "cold_wall_seconds": cold.wall_seconds,
            "warm_wall_seconds": warm.wall_seconds,
            "requests": requests,
            "not_modified": warm.esi["not_modified"],
            "not_modified_share": round(warm.esi["not_modified"] / requests, 4) if requests else None,
            "warm_efficiency": efficiency(requests, args.rps, warm.wall_seconds),
            "data_row_writes": {name: writes.get(name, 0) for name in DATA_TABLES},
            "other_row_writes": {n: w for n, w in writes.items() if n not in DATA_TABLES and w},
            "requests_per_second": warm.timeline(),
        },
        args.out,
    )
    return max(cold.exit_code, warm.exit_code)


if __name__ == "__main__":
    sys.exit(main())
