"""What the asset pages show: the catalog entries every asset declares (read by loading the code
location), and what each materialization says changed tonight, only about its own asset."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading

import dagster as dg
import pytest

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS
from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.simulator.universe import diff
from killreport_assets.storage import Storage, columns
from killreport_assets.version import __version__
from killreport_assets_tests.rabbit_support import wait_for
from killreport_assets_tests.refresh_support import expire_cache, materialize_all
from killreport_assets_tests.test_refresh import NightClock
from killreport_assets_tests.test_reliability import finished

UNIVERSE = SimulatorConfig(seed=23, alliances=60, corporations=300)
TABLES = {
    "alliances": "alliances",
    "alliance_corporations": "alliance_corporations",
    "corporations": "corporations",
    "alliance_snapshot": "alliance_snapshots",
    "corporation_snapshot": "corporation_snapshots",
}


@pytest.fixture(autouse=True)
def fast_local_esi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILLREPORT_ESI_MAX_RPS", "400")


LOAD = """
import json
from killreport_assets.definitions import defs
print(json.dumps({
    spec.key.to_user_string(): {
        "owners": list(spec.owners),
        "code_version": spec.code_version,
        "kinds": sorted(spec.kinds),
        "description": spec.description,
        "table_name": spec.metadata["dagster/table_name"],
        "columns": [
            [c.name, c.type, c.constraints.nullable] for c in spec.metadata["dagster/column_schema"].columns
        ],
    }
    for spec in defs.resolve_all_asset_specs()
}))
"""


def specs(**env: str) -> dict[str, dict]:
    """The asset specs as the code location loads in a process with `env`."""
    base = {
        k: v for k, v in os.environ.items() if k not in ("KILLREPORT_DATABASE_URL", "KILLREPORT_RABBITMQ_URL")
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD], env={**base, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_every_asset_declares_owners_code_version_kinds_and_its_table() -> None:
    embedded = specs()
    fleet = specs(
        KILLREPORT_DATABASE_URL="postgresql://killreport@127.0.0.1/killreport",
        KILLREPORT_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/%2F",
    )
    assert set(embedded) == set(TABLES)
    for name, table in TABLES.items():
        spec = fleet[name]
        assert spec["owners"] == ["team:killreport"] and spec["code_version"] == __version__
        esi_step = name in ("alliances", "alliance_corporations", "corporations")
        assert spec["kinds"] == (["postgres", "rabbitmq"] if esi_step else ["postgres"]), name
        assert embedded[name]["kinds"] == ["sqlite"], name
        assert spec["table_name"] == table
        assert spec["columns"] == [[c.name, c.type, c.nullable] for c in columns(table)]
        assert "One row per" in (spec["description"] or ""), f"{name}'s description says what a row means"


def test_each_materialization_says_what_changed_in_its_own_asset(tmp_path) -> None:
    clock = NightClock()
    url = f"sqlite:///{tmp_path / 'pages.db'}"
    with SimulatorServer(UNIVERSE, clock=clock) as simulator:
        resources = refresh_resources(
            database_url=url, esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        # The first night is filed under yesterday, so tonight's snapshot has one to compare with.
        yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
        snapshot_config = {"config": {"snapshot_date": yesterday, "force": True}}
        first = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            resources=resources,
            run_config={
                "ops": {"alliance_snapshot": snapshot_config, "corporation_snapshot": snapshot_config}
            },
        )
        assert first.success
        night = {name: first.asset_materializations_for_node(name)[0].metadata for name in TABLES}
        assert night["alliances"]["new_alliances"].value == UNIVERSE.alliances
        assert night["alliances"]["open_alliances"].value == UNIVERSE.alliances
        assert "corporations" not in night["alliances"] and "total_members" not in night["alliances"]
        assert night["corporation_snapshot"]["top_movers"].value == "no earlier snapshot, or no change"
        sample = night["alliance_snapshot"]["sample"]
        assert isinstance(sample, dg.TableMetadataValue)
        sizes = [record.data["member_count"] for record in sample.records]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) == 10
        assert [c.name for c in sample.schema.columns][:2] == ["alliance_id", "member_count"]

        day0 = simulator.universe
        day1 = simulator.set_day(1)
        changes = diff(day0, day1)
        clock.offset += 24 * 3600
        storage = Storage.open(url)
        expire_cache(storage)
        storage.dispose()
        second = materialize_all(resources)
        assert second.success
        night = {name: second.asset_materializations_for_node(name)[0].metadata for name in TABLES}

    alliances = night["alliances"]
    assert alliances["new_alliances"].value == len(changes["alliance_created"])
    assert alliances["closed_alliances"].value == len(changes["alliance_closed"])
    assert alliances["renamed_alliances"].value == len(
        changes["alliance_renamed"] - changes["alliance_closed"]
    )
    if changes["alliance_renamed"]:
        assert {r.data["id"] for r in alliances["renamed"].records} <= changes["alliance_renamed"]
    members = night["alliance_corporations"]
    assert members["joined"].value > 0 and members["left"].value > 0
    movers = night["corporation_snapshot"]["top_movers"]
    assert isinstance(movers, dg.TableMetadataValue) and movers.records
    changed = [abs(r.data["change"]) for r in movers.records]
    assert changed == sorted(changed, reverse=True)
    assert {r.data["id"] for r in movers.records} <= changes["member_count_changed"] | changes[
        "corporation_moved"
    ]
    chart = night["alliance_snapshot"]["largest_alliances_chart"]
    assert (
        chart.value.startswith("![Members of today's largest alliances")
        and "data:image/png;base64," in chart.value
    )


def test_an_esi_hold_is_in_the_run_event_log(tmp_path) -> None:
    """ESI answers 420 in the middle of the corporations step: the run's own event log (read back from
    the instance, not stdlib logging) says the refresh was paused, why, for how long and when it ended."""
    url = f"sqlite:///{tmp_path / 'holds.db'}"
    # 100 ms a request keeps the step going for 15 rounds of 20 requests after the 20th is written,
    # so the hold lands inside it however fast the rest of the pipeline is.
    with SimulatorServer(
        SimulatorConfig(seed=29, alliances=30, corporations=300, error_window=5, latency_ms=100)
    ) as simulator:
        resources = refresh_resources(
            database_url=url, esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        storage = Storage.open(url)

        def exhaust_mid_step() -> None:
            wait_for(lambda: finished(storage, "corporations") >= 20, "20 corporations finished", 120, 0.01)
            simulator.exhaust_error_limit()

        thread = threading.Thread(target=exhaust_mid_step)
        thread.start()
        with dg.instance_for_test() as instance:
            result = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], resources=resources, instance=instance)
            messages = [
                e.user_message for e in instance.all_logs(result.run_id) if e.step_key == "corporations"
            ]
        thread.join(30)
        storage.dispose()
    assert result.success
    # The governor holds on the first answer whose header says the budget is spent (or on its 420).
    held = re.compile(
        r"ESI paused \((error_limit_hold|error_limited)\) by .* until \d\d:\d\d:\d\d UTC, \d+ s: (.*)"
    )
    began = [found for m in messages if (found := held.search(m))]
    assert began, messages
    assert "error budget is down" in began[0][2] or "420 (error limit reached)" in began[0][2]
    over = re.compile(rf"ESI pause \({began[0][1]}\) by .* over after \d+ s")
    assert any(over.search(m) for m in messages), messages
