"""The commands a newcomer and an operator type: `dagster asset materialize` and `killreport demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from killreport_assets.simulator import SimulatorConfig, SimulatorProcess
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.db import scalar

BIN = Path(sys.executable).parent


def test_dagster_asset_materialize_select_all_refreshes_postgres(tmp_path: Path) -> None:
    with (
        postgres_database() as url,
        SimulatorProcess(SimulatorConfig(seed=17, alliances=50, corporations=250)) as sim,
    ):
        env = {
            **os.environ,
            "KILLREPORT_DATABASE_URL": url,
            "KILLREPORT_ESI_BASE_URL": sim.url,
            "KILLREPORT_ESI_MAX_RPS": "400",
        }
        env.pop("DAGSTER_HOME", None)
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "killreport_assets", "--select", "*"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "RUN_SUCCESS" in done.stderr
        assert "corporations: " in done.stderr and "ETA" in done.stderr, "progress is logged"
        storage = Storage.open(url)
        listed = sim.universe_json()["listed_alliance_ids"]
        assert scalar(storage, sa.select(sa.func.count()).select_from(t.alliances)) == len(listed)
        assert scalar(storage, sa.select(sa.func.count()).select_from(t.corporation_snapshots)) > 0
        storage.dispose()


def test_demo_runs_a_full_refresh_and_says_where_the_data_is(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    done = subprocess.run(
        [
            str(BIN / "killreport"),
            "demo",
            "--alliances",
            "40",
            "--corporations",
            "200",
            "--database",
            f"sqlite:///{database}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KILLREPORT_ESI_MAX_RPS": "400"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refresh succeeded" in done.stdout
    assert str(database) in done.stdout and "dagster dev -w workspace.yaml" in done.stdout
    assert database.exists()
