"""The code location loads; the schedule's tick is a run of all five assets at 02:00 UTC."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from killreport_assets.definitions import defs
from killreport_assets.schedules import REFRESH_TAG, build_daily_refresh_schedule
from killreport_assets.settings import RefreshSettings, Settings, SettingsError, schedule_hour
from killreport_assets_tests.test_deployment import code_variables

FIVE = {"alliances", "alliance_corporations", "corporations", "alliance_snapshot", "corporation_snapshot"}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == FIVE


def test_schedule_tick_is_a_run_of_all_five_assets() -> None:
    schedule = defs.resolve_schedule_def("daily_refresh_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2026, 12, 1, 2, tzinfo=dt.UTC)
        )
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    job = defs.resolve_job_def(schedule.job_name)
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == FIVE
    assert job.tags[REFRESH_TAG] == "daily" and int(job.tags["dagster/max_runtime"]) > 0


def test_schedule_hour_is_configurable_and_validated() -> None:
    schedule = build_daily_refresh_schedule(schedule_hour({"KILLREPORT_SCHEDULE_HOUR": "5"}))
    assert schedule.cron_schedule == "0 5 * * *"
    with pytest.raises(SettingsError, match="KILLREPORT_SCHEDULE_HOUR='25'"):
        schedule_hour({"KILLREPORT_SCHEDULE_HOUR": "25"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KILLREPORT_DATABASE_URL", "mysql://x"),
        ("KILLREPORT_RABBITMQ_URL", "http://broker"),
        ("KILLREPORT_ESI_BASE_URL", "esi.evetech.net"),
        ("KILLREPORT_ESI_MAX_RPS", "0"),
        ("KILLREPORT_CORPORATIONS_TIMEOUT_MINUTES", "soon"),
        ("KILLREPORT_FAILURE_THRESHOLD", "5"),
        ("KILLREPORT_ESI_ERROR_LIMIT_MARGIN", "100"),
    ],
)
def test_a_wrong_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_passwords_are_not_echoed_in_setting_errors() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"KILLREPORT_RABBITMQ_URL": "http://user:hunter2@broker/"})
    assert "hunter2" not in str(error.value)


def test_the_error_limit_reserve_reaches_the_esi_client_and_needs_no_arithmetic() -> None:
    """The reserve is the fleet's, not a sum of concurrencies: any concurrency goes with any reserve."""
    shared_ip = Settings.from_env(
        {"KILLREPORT_ESI_CONCURRENCY": "50", "KILLREPORT_ESI_ERROR_LIMIT_MARGIN": "5"}
    )
    assert shared_ip.esi.error_margin == 5
    with pytest.raises(SettingsError, match="KILLREPORT_ESI_ERROR_LIMIT_MARGIN=100"):
        Settings.from_env({"KILLREPORT_ESI_ERROR_LIMIT_MARGIN": "100"})


def test_the_esi_cache_must_outlive_the_revalidation_period() -> None:
    assert RefreshSettings.from_env({"KILLREPORT_ESI_CACHE_RETENTION_DAYS": "8"}).cache_days == 8
    with pytest.raises(
        SettingsError,
        match="KILLREPORT_ESI_CACHE_RETENTION_DAYS=7 must be more than KILLREPORT_REVALIDATE_DAYS=7",
    ):
        RefreshSettings.from_env({"KILLREPORT_ESI_CACHE_RETENTION_DAYS": "7"})


def test_a_bad_worker_only_setting_does_not_stop_the_code_location() -> None:
    """The definitions read only the schedule hour when they load; the failure sensor only the alert
    settings. A worker's bad variable is the worker's problem."""
    worker_only = {"KILLREPORT_WORKER_CONCURRENCY": "many", "KILLREPORT_MAX_ATTEMPTS": "0"}
    with pytest.raises(SettingsError, match="KILLREPORT_WORKER_CONCURRENCY"):
        Settings.from_env(worker_only)
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dagster as dg; from killreport_assets.definitions import defs; "
            "dg.Definitions.validate_loadable(defs); "
            "from killreport_assets.settings import AlertSettings; AlertSettings.from_env()",
        ],
        env={**os.environ, **worker_only},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert load.returncode == 0, load.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:hunter2@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/%2F"),
        ("postgresql://app:hun/ter@2@db:5432/kb", "postgresql://app:***@db:5432/kb"),
        (
            "postgresql://db/kb?user=app&password=hunter2&sslmode=require",
            "postgresql://db/kb?user=app&password=***&sslmode=require",
        ),
        ("sqlite:////var/lib/killreport.db", "sqlite:////var/lib/killreport.db"),
    ],
)
def test_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    from killreport_assets.envvars import redact_url

    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url) and "hun/ter@2" not in redact_url(url)


FREE_TEXT = {"KILLREPORT_ESI_CONTACT", "KILLREPORT_LOG_FILE"}  # any non-empty text is a valid value


@pytest.mark.parametrize("name", sorted(code_variables() - FREE_TEXT))
def test_every_setting_with_a_wrong_value_is_refused_naming_it(name: str) -> None:
    """Every variable the code reads, set to garbage: one clear error that names it."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "-not a value-"})


@pytest.mark.parametrize("command", [["worker"], ["queues"], ["enqueue", "corporation", "1"]])
def test_a_command_with_a_wrong_setting_exits_non_zero_naming_it_and_writes_nothing(
    command: list[str], tmp_path: Path
) -> None:
    database = tmp_path / "untouched.db"
    env = {
        **os.environ,
        "KILLREPORT_DATABASE_URL": f"sqlite:///{database}",
        "KILLREPORT_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "KILLREPORT_RETRY_DELAY_SECONDS": "soon",
    }
    done = subprocess.run(
        [sys.executable, "-m", "killreport_assets.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "KILLREPORT_RETRY_DELAY_SECONDS" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2
    assert not database.exists(), "nothing written"
