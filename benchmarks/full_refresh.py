"""Benchmark: `dagster asset materialize -m killreport_assets --select '*'` against a default-size
simulated universe (3,616 alliances, ~18,000 corporations) on a fresh PostgreSQL database.

Prints wall time, ESI requests, the ESI-bound floor (requests / rate cap) and the time spent outside
ESI pacing (wall − floor): the overhead this project adds on top of what ESI politely allows.

    .venv/bin/python -m benchmarks.full_refresh [--alliances N --corporations N --latency-ms 50 --rps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from killreport_assets.simulator import SimulatorConfig, SimulatorProcess
from killreport_assets.storage import Storage
from killreport_assets_tests.databases import postgres_database

STEP_TIME = re.compile(r'Finished execution of step "(\w+)" in ([\d.]+)(ms|s|m)')


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alliances", type=int, default=3616)
    parser.add_argument("--corporations", type=int, default=18000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--rps", type=float, default=50.0, help="KILLREPORT_ESI_MAX_RPS (default 50)")
    args = parser.parse_args()

    config = SimulatorConfig(
        seed=1,
        alliances=args.alliances,
        corporations=args.corporations,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
    )
    with (
        postgres_database() as url,
        SimulatorProcess(config) as simulator,
        tempfile.TemporaryDirectory() as cwd,
    ):
        env = {
            **os.environ,
            "KILLREPORT_DATABASE_URL": url,
            "KILLREPORT_ESI_BASE_URL": simulator.url,
            "KILLREPORT_ESI_MAX_RPS": str(args.rps),
        }
        env.pop("DAGSTER_HOME", None)
        started = time.monotonic()
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster"),
                "asset",
                "materialize",
                "-m",
                "killreport_assets",
                "--select",
                "*",
            ],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        stats = simulator.stats()
        storage = Storage.open(url)
        rows = storage.reports.row_counts()
        storage.dispose()

    steps = {}
    for name, value, unit in STEP_TIME.findall(done.stderr):
        steps[name] = round(float(value) * {"ms": 0.001, "s": 1, "m": 60}[unit], 1)
    floor = stats["requests"] / args.rps
    print(
        json.dumps(
            {
                "exit_code": done.returncode,
                "wall_seconds": round(wall, 1),
                "esi_requests": stats["requests"],
                "esi_by_route": stats["by_route"],
                "requests_per_second": round(stats["requests"] / wall, 1),
                "rate_cap": args.rps,
                "esi_bound_floor_seconds": round(floor, 1),
                "outside_esi_pacing_seconds": round(wall - floor, 1),
                "step_seconds": steps,
                "rows": rows,
            },
            indent=2,
        )
    )
    if done.returncode != 0:
        print(done.stderr[-5000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
