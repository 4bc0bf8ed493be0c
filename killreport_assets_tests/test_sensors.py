"""The run-failure alert: a failed refresh posts a well-formed Slack- and Discord-compatible message
to the webhook, a failing webhook never breaks the sensor, and the webhook URL never reaches a log."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from killreport_assets import sensors
from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS
from killreport_assets.resources import refresh_resources
from killreport_assets.sensors import (
    MESSAGE_LIMIT,
    FailureAlert,
    failure_alert_sensor,
    freshness_alert_sensor,
)
from killreport_assets.settings import Settings, SettingsError
from killreport_assets.simulator import SimulatorConfig, SimulatorProcess, SimulatorServer
from killreport_assets_tests.dagster_support import LOCATION, DagsterDev, free_port, wait_until
from killreport_assets_tests.http_receiver import HttpReceiver

UNIVERSE = SimulatorConfig(seed=23, alliances=40, corporations=200)
# The secret part of a Slack webhook URL: it must never show up in a log.
SECRET = "T0000000/B0000000/sEcReTtOkEnXXXXXXXXXXXX"
UI_URL = "https://dagster.example.org:3000"


@pytest.fixture(scope="module")
def failed_refresh(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, list[int]]]:
    """A real refresh that fails: 3 of 40 alliances always answer 500, far above the 1% limit."""
    database = tmp_path_factory.mktemp("failed-refresh") / "app.db"
    with (
        pytest.MonkeyPatch.context() as env,
        SimulatorServer(UNIVERSE) as simulator,
        dg.instance_for_test() as instance,
    ):
        env.setenv("KILLREPORT_ESI_MAX_RPS", "400")
        poison = sorted(simulator.universe.listed_alliance_ids())[:3]
        simulator.configure(poison_alliances=poison)
        resource = refresh_resources(
            database_url=f"sqlite:///{database}", esi_base_url=simulator.url, poll_interval_seconds=0.05
        )
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            resources=resource,
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        yield instance, result, poison


def failure_context(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dg.RunFailureSensorContext:
    return dg.build_run_status_sensor_context(
        sensor_name=failure_alert_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


def test_a_failed_refresh_posts_a_well_formed_alert(
    failed_refresh: tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    instance, result, poison = failed_refresh
    with HttpReceiver() as hook:
        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{hook.url}/services/{SECRET}")
        monkeypatch.setenv("KILLREPORT_DAGSTER_UI_URL", UI_URL + "/")
        failure_alert_sensor(failure_context(instance, result))
        request = hook.next_request()

    assert (request.method, request.path) == ("POST", f"/services/{SECRET}")
    assert request.headers["Content-Type"] == "application/json"
    payload = request.json()
    assert set(payload) == {"text", "content", "username"}, "Slack reads text, Discord content"
    assert payload["text"] == payload["content"]
    lines = payload["text"].splitlines()
    assert lines[0] == f"killreport: asset materialization run {result.run_id[:8]} failed"
    assert lines[1] == "Failed step: alliances"
    assert lines[2].startswith(
        "Error: alliances: 3 of 40 entities failed permanently (7.5%, above the 1% limit)"
    )
    assert all(str(alliance_id) in lines[2] for alliance_id in poison)
    assert lines[3] == f"Run: {UI_URL}/runs/{result.run_id}"
    assert len(payload["text"]) <= MESSAGE_LIMIT

    output = capfd.readouterr()
    assert "failure alert delivered to http://127.0.0.1/…" in output.out + output.err
    assert SECRET not in output.out + output.err


@pytest.mark.parametrize("failure", ["HTTP 500", "timeout", "connection refused"])
def test_a_failing_webhook_never_breaks_the_sensor(
    failure: str,
    failed_refresh: tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    instance, result, _ = failed_refresh
    monkeypatch.setattr(sensors, "WEBHOOK_TIMEOUT_SECONDS", 1.0)
    with contextlib.ExitStack() as stack:
        if failure == "connection refused":
            hook = None
            base = f"http://127.0.0.1:{free_port()}"
        else:
            hook = stack.enter_context(HttpReceiver(status=500, body=b"boom", hang=failure == "timeout"))
            base = hook.url
        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{base}/services/{SECRET}")
        started = time.monotonic()
        assert failure_alert_sensor(failure_context(instance, result)) is None, "the sensor returns normally"
        assert time.monotonic() - started < 10
        if hook is not None:
            hook.next_request(timeout=1)

    logged = "".join(capfd.readouterr())
    assert "failure alert not delivered to http://127.0.0.1/…" in logged
    assert SECRET not in logged

    # The next failure is delivered as usual.
    with HttpReceiver() as hook:
        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{hook.url}/services/{SECRET}")
        failure_alert_sensor(failure_context(instance, result))
        assert result.run_id[:8] in hook.next_request().json()["text"]


def test_no_webhook_no_alert(
    failed_refresh: tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    instance, result, _ = failed_refresh
    monkeypatch.delenv("KILLREPORT_ALERT_WEBHOOK_URL", raising=False)
    assert failure_alert_sensor(failure_context(instance, result)) is None
    assert "failure alert" not in "".join(capfd.readouterr())


def test_a_run_that_failed_outside_its_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """No step failed (run monitoring stopped it, its worker crashed): the run's own failure is sent."""
    with dg.instance_for_test() as instance, HttpReceiver() as hook:
        run = dg.DagsterRun(
            job_name="daily_refresh_job", tags={"dagster/schedule_name": "daily_refresh_schedule"}
        )
        instance.add_run(run)
        event = instance.report_run_failed(run, "Run timed out: exceeded its maximum runtime of 14400 s")
        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{hook.url}/services/{SECRET}")
        monkeypatch.setenv("KILLREPORT_DAGSTER_UI_URL", UI_URL)
        context = dg.build_run_status_sensor_context(
            sensor_name=failure_alert_sensor.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=event,
        ).for_run_failure()
        failure_alert_sensor(context)
        text = hook.next_request().json()["text"]
    assert text.splitlines() == [
        f"killreport: daily_refresh_job run {run.run_id[:8]} failed, launched by schedule daily_refresh_schedule",
        "Error: Run timed out: exceeded its maximum runtime of 14400 s",
        f"Run: {UI_URL}/runs/{run.run_id}",
    ]


def test_an_invalid_webhook_url_is_not_echoed() -> None:
    with pytest.raises(SettingsError, match="KILLREPORT_ALERT_WEBHOOK_URL='<hidden>' is invalid") as error:
        Settings.from_env({"KILLREPORT_ALERT_WEBHOOK_URL": f"hooks.slack.com/services/{SECRET}"})
    assert SECRET not in str(error.value)


def test_a_long_error_is_cut_to_fit_discord_and_keeps_the_link() -> None:
    alert = FailureAlert(
        run_id="0123456789abcdef",
        job="daily_refresh_job",
        steps=["corporations"],
        error="x" * 5000,
        run_url=f"{UI_URL}/runs/0123456789abcdef",
        schedule="daily_refresh_schedule",
    )
    text = alert.text()
    assert len(text) == MESSAGE_LIMIT
    assert text.startswith("killreport: daily_refresh_job run 01234567 failed, launched by schedule")
    assert text.endswith(f"…\nRun: {UI_URL}/runs/0123456789abcdef")


def test_the_daemon_alerts_when_a_refresh_fails(tmp_path: Path) -> None:
    """Through the real machinery: `dagster dev`'s daemon evaluates the sensor (on by default) in the
    code server, whose environment carries the webhook URL."""
    with (
        HttpReceiver() as hook,
        SimulatorProcess(UNIVERSE) as simulator,
    ):
        simulator.configure(poison_alliances=simulator.universe_json()["listed_alliance_ids"][:3])
        home = tmp_path / "dagster_home"
        home.mkdir()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "KILLREPORT_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "KILLREPORT_ESI_BASE_URL": simulator.url,
            "KILLREPORT_ESI_MAX_RPS": "400",
            "KILLREPORT_ALERT_WEBHOOK_URL": f"{hook.url}/services/{SECRET}",
            "KILLREPORT_DAGSTER_UI_URL": UI_URL,
        }
        with DagsterDev(env, tmp_path / "dagster-dev.log") as dev:
            # A run-status sensor starts from the events after its first tick: wait for that tick.
            wait_until(lambda: _sensor_ticks(dev) > 0, "the failure sensor's first tick", timeout=120)
            run_id = dev.launch("daily_refresh_job")
            run = dev.wait_for_run(run_id, timeout=300)
            assert run["status"] == "FAILURE", dev.log_tail()
            text = hook.next_request(timeout=120).json()["text"]
            log = dev.log_path.read_text()
    assert text.startswith(f"killreport: daily_refresh_job run {run_id[:8]} failed")
    assert "Failed step: alliances" in text and f"Run: {UI_URL}/runs/{run_id}" in text
    assert SECRET not in log


def _sensor_ticks(dev: DagsterDev) -> int:
    data = dev.graphql(
        """
        query ($selector: SensorSelector!) {
          sensorOrError(sensorSelector: $selector) {
            ... on Sensor { sensorState { status ticks(limit: 1) { id } } }
          }
        }
        """,
        {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "sensorName": failure_alert_sensor.name,
            }
        },
    )
    state = data["sensorOrError"]["sensorState"]
    assert state["status"] == "RUNNING", "the sensor is on by default"
    return len(state["ticks"])


def test_stale_assets_alert_once_through_the_webhook_until_they_are_materialized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment 31 h old in which only `alliances` was ever materialized: the freshness sensor posts
    the four others once (not again on the next tick), and forgets them once they are materialized."""
    deployed = time.time() - 31 * 3600
    with HttpReceiver() as hook, dg.instance_for_test() as instance:
        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{hook.url}/services/{SECRET}")
        monkeypatch.setenv("KILLREPORT_DAGSTER_UI_URL", UI_URL)
        instance.report_runless_asset_event(dg.AssetMaterialization("alliances"))

        def tick(cursor: str | None) -> tuple[str, str | None]:
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            outcome = freshness_alert_sensor(context)
            return outcome.skip_message, context.cursor

        message, cursor = tick(json.dumps({"since": deployed}))
        lines = hook.next_request().json()["text"].splitlines()
        others = ["alliance_corporations", "corporations", "alliance_snapshot", "corporation_snapshot"]
        assert lines[0] == (
            "killreport: 4 assets are stale (not materialized within 30 h): "
            + ", ".join(f"{name} (never materialized)" for name in others)
        )
        assert "`killreport doctor`" in lines[1] and lines[2] == f"Assets: {UI_URL}/assets"
        assert message == "stale: " + ", ".join(others)

        message, cursor = tick(cursor)
        assert message == "stale: " + ", ".join(others)
        for name in others:
            instance.report_runless_asset_event(dg.AssetMaterialization(name))
        message, cursor = tick(cursor)
        assert message == "every asset is within its freshness policy"
        assert json.loads(cursor or "{}")["alerted"] == {}
        assert hook.requests.empty(), "one post for the whole stale episode"


def test_a_step_over_its_failure_threshold_still_reports_its_failed_entities(
    failed_refresh: tuple[dg.DagsterInstance, dg.ExecuteInProcessResult, list[int]],
) -> None:
    _, result, poison = failed_refresh
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "alliances_failed_entities"]
    assert not check.passed and check.metadata["failed"].value == 3
    assert check.metadata["failed_ids"].value == poison
    assert set(check.metadata["errors"].value) == {str(i) for i in poison}
    assert all("500" in error for error in check.metadata["errors"].value.values())
