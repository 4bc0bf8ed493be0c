"""`killreport demo`: a one-command try-out without internet.

Starts the ESI simulator on a free loopback port, runs the full refresh (all five assets and their
checks) in embedded mode, and prints what it did and where to look. The run is kept in a Dagster
instance of the demo's own (`./killreport-demo/dagster`, or $DAGSTER_HOME), and `--ui` then starts
the Dagster UI on it with the simulator still running: "Materialize all" there refreshes from the
simulator, never from the real ESI. Ctrl-C stops the UI and the simulator.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
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
        help="application database URL (default: sqlite:///./killreport-demo/killreport.db)",
    )
    parser.add_argument(
        "--ui",
        action="store_true",
        help="then start the Dagster UI on the demo's run history, with the simulator kept running as "
        "its ESI; Ctrl-C stops both",
    )
    parser.add_argument(
        "--port", type=positive_int, default=3000, help="the UI's port with --ui (default 3000)"
    )


def run(args: argparse.Namespace) -> int:
    import dagster as dg  # here, not at the top: `killreport` should start fast for every other command

    from killreport_assets.assets import ALL_ASSETS
    from killreport_assets.checks import ALL_CHECKS
    from killreport_assets.resources import refresh_resources
    from killreport_assets.simulator import SimulatorConfig, SimulatorServer
    from killreport_assets.storage import Storage

    folder = Path.cwd() / "killreport-demo"
    home = Path(os.environ.get("DAGSTER_HOME") or folder / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    database_url = args.database or f"sqlite:///{folder / 'killreport.db'}"
    config = SimulatorConfig(
        seed=args.seed, alliances=args.alliances, corporations=args.corporations, day=args.day
    )
    started = time.monotonic()
    with SimulatorServer(config) as simulator:
        print(
            f"ESI simulator: {simulator.url} ({args.alliances} alliances, ~{args.corporations} corporations)"
        )
        os.environ["DAGSTER_HOME"] = str(home)  # the instance `dagster dev` opens with --ui
        with dg.DagsterInstance.get() as instance:
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
        print(f"data: {redact_url(database_url)}; run history: {home}")
        if not args.ui:
            print("look at it in the UI, refreshing from this simulator: killreport demo --ui")
            return 0 if result.success else 1
        return _ui(args.port, home, database_url, simulator.url)


def _ui(port: int, home: Path, database_url: str, esi_url: str) -> int:
    """`dagster dev` on the demo's instance and data, its ESI the running simulator; until Ctrl-C."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KILLREPORT_DATABASE_URL": database_url,
        "KILLREPORT_ESI_BASE_URL": esi_url,
    }
    env.pop("KILLREPORT_RABBITMQ_URL", None)  # the demo is embedded mode
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-m", "killreport_assets", "-h", "127.0.0.1", "-p", str(port)]
    print(f"Dagster UI: http://127.0.0.1:{port} (its ESI is the simulator at {esi_url}); Ctrl-C stops both")
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)  # dagster dev stops its webserver and daemon on SIGINT
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        print("stopped the Dagster UI and the ESI simulator")
        return 0
