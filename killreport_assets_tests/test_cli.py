"""The commands a newcomer and an operator type: `dagster asset materialize` and `killreport demo`."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from killreport_assets.simulator import SimulatorConfig, SimulatorProcess
from killreport_assets.storage import Storage
from killreport_assets.storage.database import head_revision
from killreport_assets_tests import schema as t
from killreport_assets_tests.dagster_support import free_port, wait_until
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
    home = tmp_path / "killreport-demo" / "dagster"
    assert f"data: sqlite:///{database}; run history: {home}" in done.stdout
    assert done.stdout.rstrip().endswith(
        "look at it in the UI, refreshing from this simulator: killreport demo --ui"
    )
    assert database.exists() and (home / "history" / "runs.db").exists(), "the demo keeps its run history"


def test_demo_ui_shows_the_demo_run_with_the_simulator_as_its_esi_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KILLREPORT_ESI_MAX_RPS": "400"}
    env.pop("DAGSTER_HOME", None)
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen(
        [
            str(BIN / "killreport"),
            "demo",
            "--alliances",
            "20",
            "--corporations",
            "100",
            "--ui",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def runs() -> list | None:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": "{ runsOrError { ... on Runs { results { runId status } } } }"},
                    timeout=10,
                ).json()
            except httpx.HTTPError:
                return None
            return answer.get("data", {}).get("runsOrError", {}).get("results") or None

        found = wait_until(runs, "the demo's UI to list the demo's run", 240)
        assert [run["status"] for run in found] == ["SUCCESS"]
        output = (tmp_path / "demo.log").read_text()
        esi = re.search(r"its ESI is the simulator at (http://127\.0\.0\.1:\d+)\)", output)
        assert esi, output
        assert httpx.get(f"{esi[1]}/_sim/stats", timeout=10).json()["requests"] > 0, (
            "the simulator still answers"
        )
        demo.send_signal(signal.SIGINT)
        assert demo.wait(90) == 0
        assert "stopped the Dagster UI and the ESI simulator" in (tmp_path / "demo.log").read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{esi[1]}/_sim/stats", timeout=5)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(30)
        log.close()


def _killreport(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "killreport"), *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_infrastructure_errors_are_one_line_and_an_exit_code(tmp_path: Path) -> None:
    missing = "postgresql://postgres@127.0.0.1:5432/killreport_no_such_database"
    done = _killreport(tmp_path, "migrate", KILLREPORT_DATABASE_URL=missing)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "killreport migrate: cannot open the application database "
        "postgresql+psycopg2://postgres@127.0.0.1:5432/killreport_no_such_database: connection to server at "
        '"127.0.0.1", port 5432 failed: FATAL: database "killreport_no_such_database" does not exist. '
        "Check KILLREPORT_DATABASE_URL and that the server is running."
    ]

    no_broker = "amqp://guest:secret@127.0.0.1:9/%2F"  # port 9: nothing listens (discard)
    for command in (["queues"], ["enqueue", "corporation", "98000001"]):
        done = _killreport(tmp_path, *command, KILLREPORT_RABBITMQ_URL=no_broker)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.splitlines() == [
            f"killreport {command[0]}: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:9/%2F: connection "
            "refused, or no broker listening there (AMQPConnectionError); is it running?"
        ]

    done = _killreport(tmp_path, "demo", "--alliances", "0")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1]
        == "killreport demo: error: argument --alliances: expected a positive integer, got '0'"
    )


def test_migrate_is_quiet_and_a_percent_threshold_is_understood(tmp_path: Path) -> None:
    from killreport_assets.settings import RefreshSettings
    from killreport_assets.storage.database import head_revision

    assert RefreshSettings.from_env({"KILLREPORT_FAILURE_THRESHOLD": "5%"}).failure_threshold == 0.05
    first = _killreport(tmp_path, "migrate", KILLREPORT_FAILURE_THRESHOLD="5%")
    assert first.returncode == 0, first.stderr
    assert "Running upgrade" in first.stderr and "Will assume" not in first.stderr
    again = _killreport(tmp_path, "migrate")
    assert again.returncode == 0 and again.stderr == "", "nothing to upgrade, nothing said but the result"
    assert again.stdout.strip().endswith(f"schema at revision {head_revision()}")


def test_migrate_current_and_sql_only_look_and_a_plain_migrate_upgrades(tmp_path: Path) -> None:
    database = tmp_path / "review.db"
    env = {"KILLREPORT_DATABASE_URL": f"sqlite:///{database}"}
    url = f"sqlite:///{database}"

    before = _killreport(tmp_path, "migrate", "--current", **env)
    head = head_revision()
    assert before.returncode == 0
    assert (
        before.stdout
        == f"{url}: revision none (no schema yet), newest {head} (behind: run `killreport migrate` to upgrade)\n"
    )
    sql = _killreport(tmp_path, "migrate", "--sql", **env)
    assert sql.returncode == 0 and "CREATE TABLE step_leases" in sql.stdout
    assert f"UPDATE alembic_version SET version_num='{head}'" in sql.stdout
    assert sa.inspect(sa.create_engine(url)).get_table_names() == [], "--current and --sql changed nothing"

    assert _killreport(tmp_path, "migrate", **env).stdout == f"{url}: schema at revision {head}\n"
    after = _killreport(tmp_path, "migrate", "--current", **env)
    assert after.stdout == f"{url}: revision {head}, newest {head} (up to date)\n"
    assert _killreport(tmp_path, "migrate", "--sql", **env).stdout.startswith("-- ")


def test_config_prints_every_effective_setting_with_secrets_hidden(tmp_path: Path) -> None:
    done = _killreport(
        tmp_path,
        "config",
        KILLREPORT_DATABASE_URL="postgresql://killreport:pw7731/x@y@db.internal:5432/killreport?sslpassword=pw5520",
        KILLREPORT_RABBITMQ_URL="amqp://killreport:pw8841@mq.internal:5672/%2F",
        KILLREPORT_ALERT_WEBHOOK_URL="https://hooks.example.com/services/T0/B0/pw9912",
        KILLREPORT_STALL_TIMEOUT_SECONDS="900",
    )
    assert done.returncode == 0, done.stderr
    settings = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert (
        settings["database_url"] == "postgresql://killreport:***@db.internal:5432/killreport?sslpassword=***"
    )
    assert settings["broker.url"] == "amqp://killreport:***@mq.internal:5672/%2F"
    assert settings["alerts.webhook_url"] == "*** (set)"
    assert settings["refresh.stall_timeout"] == "900.0" and settings["refresh.lease_ttl"] == "120.0"
    assert "pw" not in done.stdout + done.stderr


def test_every_subcommand_describes_each_option_and_the_environment_it_reads() -> None:
    from killreport_assets.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    expected = {
        "worker": [
            "KILLREPORT_RABBITMQ_URL",
            "KILLREPORT_DATABASE_URL",
            "KILLREPORT_ESI_MAX_RPS",
            "KILLREPORT_WORKER_CONCURRENCY",
        ],
        "queues": [
            "KILLREPORT_RABBITMQ_URL",
            "KILLREPORT_RABBITMQ_MANAGEMENT_URL",
            "KILLREPORT_DATABASE_URL",
        ],
        "enqueue": ["KILLREPORT_RABBITMQ_URL", "KILLREPORT_DATABASE_URL"],
        "migrate": ["KILLREPORT_DATABASE_URL"],
        "doctor": ["KILLREPORT_DAGSTER_UI_URL", "KILLREPORT_DATABASE_URL", "KILLREPORT_RABBITMQ_URL"],
        "demo": ["KILLREPORT_ESI_MAX_RPS", "DAGSTER_HOME"],
        "config": ["KILLREPORT_*"],
    }
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"killreport {name} {'/'.join(action.option_strings) or action.dest}: no help"
        text = " ".join(command.format_help().split())
        for variable in expected.get(name, []):
            assert variable in text, f"killreport {name} --help does not name {variable}"
