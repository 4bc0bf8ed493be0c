"""`killreport demo`: a one-command try-out without internet.

Starts the ESI simulator on a free loopback port, runs the full refresh (all five assets and their
checks) in embedded mode, and prints what it did and where to look.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from killreport_assets.cli import positive_int
from killreport_assets.envvars import redact_url


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alliances",
        type=positive_int,
        default=300,
        help="simulated alliances (default 300; ESI has ~3,600)",
    )
    parser.add_argument(
        "--corporations",
        type=positive_int,
        default=1500,
        help="simulated member corporations (default 1500; ESI has ~18,000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument(
        "--day", type=int, default=0, help="simulated day; a later day drifts like a real night"
    )
    parser.add_argument(
        "--database",
        default=None,
        help="application database URL (default: sqlite:///./killreport-demo.db)",
    )


def run(args: argparse.Namespace) -> int:
    import dagster as dg  # here, not at the top: `killreport` should start fast for every other command

    from killreport_assets.assets import ALL_ASSETS
    from killreport_assets.checks import ALL_CHECKS
    from killreport_assets.resources import refresh_resources
    from killreport_assets.simulator import SimulatorConfig, SimulatorServer
    from killreport_assets.storage import Storage

    database_url = args.database or f"sqlite:///{Path.cwd() / 'killreport-demo.db'}"
    config = SimulatorConfig(
        seed=args.seed, alliances=args.alliances, corporations=args.corporations, day=args.day
    )
    started = time.monotonic()
    with SimulatorServer(config) as simulator:
        print(
            f"ESI simulator: {simulator.url} ({args.alliances} alliances, ~{args.corporations} corporations)"
        )
        instance = (
            dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
        )
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            resources=refresh_resources(database_url=database_url, esi_base_url=simulator.url),
            instance=instance,
            raise_on_error=False,
        )
        requests = simulator.stats()["requests"]
    elapsed = time.monotonic() - started

    storage = Storage.open(database_url)
    try:
        counts = storage.reports.row_counts()
    finally:
        storage.dispose()
    checks = result.get_asset_check_evaluations()
    print()
    print(
        f"refresh {'succeeded' if result.success else 'FAILED'} in {elapsed:.1f} s with {requests} ESI requests"
    )
    for name, n in counts.items():
        print(f"  {name:<24} {n:>7} rows")
    print(f"  asset checks passed     {sum(c.passed for c in checks):>7} of {len(checks)}")
    print(f"data: {redact_url(database_url)}")
    print("look at it in the UI (set DAGSTER_HOME to keep the run history between commands):")
    print(f"  KILLREPORT_DATABASE_URL='{redact_url(database_url)}' dagster dev -w workspace.yaml")
    return 0 if result.success else 1
