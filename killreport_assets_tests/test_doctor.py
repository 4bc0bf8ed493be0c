"""`killreport doctor` against a running stack, then with each dependency missing in turn.

The stack is the Docker deployment without Docker: the production dagster.yaml on a throw-away
PostgreSQL database, and the user-code, webserver, daemon, ESI simulator and worker services started
from docker-compose.yml's own commands, each ready once its compose healthcheck passes.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pika
import pytest

from killreport_assets.doctor import Check, check_esi, run_checks, work_queues
from killreport_assets.settings import Settings
from killreport_assets.storage import Storage
from killreport_assets.transport.topology import Topology
from killreport_assets_tests.compose_support import LocalStack, local_workspace, loopback_ports
from killreport_assets_tests.dagster_support import BIN, free_port, production_home, wait_until
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.http_receiver import HttpReceiver
from killreport_assets_tests.rabbit_support import RABBITMQ_ADDRESS, rabbitmqctl

ALL_UP_EMBEDDED = {
    "configuration",
    "database",
    "esi",
    "esi contact",
    "dagster home",
    "dagster daemon",
    "dagster webserver",
    "schedule daily_refresh_schedule",
    "log folder",
}


@dataclass
class Stack:
    env: dict[str, str]
    services: LocalStack
    folder: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("stack")
    ports = loopback_ports(3000, 4000, 8080)
    with production_home(folder / "dagster_home") as dagster_env, postgres_database() as app_database:
        Storage.open(app_database).dispose()  # creates the schema, as the first refresh would
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KILLREPORT_", "DAGSTER_"))},
            **dagster_env,
            "KILLREPORT_DATABASE_URL": app_database,
            "KILLREPORT_ESI_BASE_URL": f"http://127.0.0.1:{ports[8080]}",
            "KILLREPORT_ESI_CONTACT": "ops@example.com",
            "KILLREPORT_DAGSTER_UI_URL": f"http://127.0.0.1:{ports[3000]}",
            "KILLREPORT_LOG_FILE": str(folder / "logs" / "killreport.log"),
        }
        with LocalStack(env, folder, local_workspace(folder, ports[4000]), ports) as services:
            services.start("esi-sim", "--alliances", "40", "--corporations", "200")
            services.start("user-code")
            services.start("webserver")
            services.start("daemon", timeout=300)
            yield Stack(env, services, folder)


def doctor(env: Mapping[str, str], *, webserver_url: str | None = None) -> dict[str, Check]:
    with mock.patch.dict(os.environ, env, clear=True):
        return {check.name: check for check in run_checks(webserver_url=webserver_url)}


def failed(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.line() for name, check in checks.items() if not check.ok}


def test_the_compose_services_run_from_their_commands_and_pass_their_healthchecks(stack: Stack) -> None:
    """The fixture started user-code, webserver, daemon and esi-sim from docker-compose.yml and waited
    for each compose healthcheck; here they are still healthy together."""
    for service in ("esi-sim", "user-code", "webserver", "daemon"):
        assert stack.services.healthy(service), stack.services.log(service)


def test_all_up_in_embedded_mode(stack: Stack) -> None:
    checks = doctor(stack.env)
    assert set(checks) == ALL_UP_EMBEDDED
    assert not failed(checks), failed(checks)
    assert checks["schedule daily_refresh_schedule"].detail.startswith("RUNNING (0 2 * * * UTC, next ")
    assert checks["dagster home"].detail.endswith("Postgres storage")


def test_the_command_prints_one_line_per_check_and_exits_by_the_outcome(stack: Stack) -> None:
    command = [str(BIN / "killreport"), "doctor"]
    passing = subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=300)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    lines = passing.stdout.splitlines()
    assert len(lines) == len(ALL_UP_EMBEDDED) + 1 and all(line.startswith("ok      ") for line in lines[:-1])
    assert lines[-1] == f"doctor: all {len(ALL_UP_EMBEDDED)} ok"

    broken = {**stack.env, "KILLREPORT_ESI_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    failing = subprocess.run(command, env=broken, capture_output=True, text=True, timeout=300)
    assert failing.returncode == 1
    (line,) = [line for line in failing.stdout.splitlines() if line.startswith("FAILED")]
    assert (
        line.startswith("FAILED  esi: http://127.0.0.1:") and " -> fix: check KILLREPORT_ESI_BASE_URL" in line
    )
    assert failing.stdout.splitlines()[-1] == f"doctor: 1 of {len(ALL_UP_EMBEDDED)} checks failed"


CLOSED = free_port()


MISSING = [
    (
        "database server",
        {"KILLREPORT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{CLOSED}/killreport"},
        "database",
        "start PostgreSQL",
    ),
    (
        "database",
        {"KILLREPORT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/killreport_no_such_database"},
        "database",
        "create the database",
    ),
    (
        "ESI",
        {"KILLREPORT_ESI_BASE_URL": f"http://127.0.0.1:{CLOSED}"},
        "esi",
        "check KILLREPORT_ESI_BASE_URL",
    ),
    ("ESI contact", {"KILLREPORT_ESI_CONTACT": None}, "esi contact", "set KILLREPORT_ESI_CONTACT"),
    ("DAGSTER_HOME", {"DAGSTER_HOME": None}, "dagster home", "set DAGSTER_HOME"),
    (
        "DAGSTER_HOME folder",
        {"DAGSTER_HOME": "/nonexistent/dagster_home"},
        "dagster home",
        "set DAGSTER_HOME",
    ),
    ("Dagster database", {"DAGSTER_PG_PORT": str(CLOSED)}, "dagster home", "is the Dagster database up?"),
    ("webserver", {"KILLREPORT_DAGSTER_UI_URL": f"http://127.0.0.1:{CLOSED}"}, "dagster webserver", "start"),
    ("log folder", {"KILLREPORT_LOG_FILE": "/proc/killreport/killreport.log"}, "log folder", "writable"),
    ("a valid setting", {"KILLREPORT_ESI_MAX_RPS": "fast"}, "configuration", "correct that variable"),
]


@pytest.mark.parametrize(("missing", "changes", "check", "hint"), MISSING, ids=[case[0] for case in MISSING])
def test_each_missing_dependency_fails_its_check_with_a_hint(
    stack: Stack, missing: str, changes: dict[str, str | None], check: str, hint: str
) -> None:
    env = {k: v for k, v in {**stack.env, **changes}.items() if v is not None}
    checks = doctor(env)
    assert list(failed(checks)) == [check], failed(checks)
    assert hint in checks[check].fix, checks[check].line()


def test_a_database_without_the_schema(stack: Stack) -> None:
    with postgres_database() as empty:
        checks = doctor({**stack.env, "KILLREPORT_DATABASE_URL": empty})
    assert list(failed(checks)) == ["database"]
    assert "schema revision none" in checks["database"].detail
    assert "killreport migrate" in checks["database"].fix


def test_dagster_home_without_a_shared_instance(stack: Stack, tmp_path: Path) -> None:
    no_config = tmp_path / "empty"
    no_config.mkdir()
    checks = doctor({**stack.env, "DAGSTER_HOME": str(no_config)})
    assert list(failed(checks)) == ["dagster home"]
    assert "copy deploy/dagster.yaml" in checks["dagster home"].fix

    (no_config / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # SQLite in a temp folder
    checks = doctor({**stack.env, "DAGSTER_HOME": str(no_config)})
    assert list(failed(checks)) == ["dagster home"]
    assert "temporary folder" in checks["dagster home"].detail


def test_webserver_and_daemon_must_share_the_instance(stack: Stack, tmp_path: Path) -> None:
    """A DAGSTER_HOME whose instance no daemon writes to, and which the running webserver does not
    read: both checks fail."""
    with production_home(tmp_path / "other_home") as other:
        checks = doctor({**stack.env, **other})
    assert list(failed(checks)) == ["dagster daemon", "dagster webserver"]
    assert "no recent heartbeat from" in checks["dagster daemon"].detail
    assert "`dagster-daemon run` with this DAGSTER_HOME" in checks["dagster daemon"].fix
    assert "reads another instance" in checks["dagster webserver"].detail
    assert "same DAGSTER_HOME" in checks["dagster webserver"].fix


def test_a_stopped_schedule(stack: Stack) -> None:
    def dagster(action: str) -> None:
        command = [
            *(str(BIN / "dagster"), "schedule", action, "daily_refresh_schedule"),
            *("-w", str(stack.folder / "workspace.yaml")),
        ]
        done = subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    dagster("stop")
    try:
        checks = doctor(stack.env)
    finally:
        dagster("start")
    assert list(failed(checks)) == ["schedule daily_refresh_schedule"]
    assert checks["schedule daily_refresh_schedule"].detail == "is STOPPED"
    assert "dagster schedule start daily_refresh_schedule" in checks["schedule daily_refresh_schedule"].fix
    assert not failed(doctor(stack.env))


def test_rabbitmq_mode_checks_the_broker_and_a_consumer_on_every_queue(stack: Stack) -> None:
    vhost = f"killreport_doctor_{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        env = {**stack.env, "KILLREPORT_RABBITMQ_URL": f"amqp://guest:guest@{RABBITMQ_ADDRESS}/{vhost}"}
        queues = [f"queue {name}" for name in work_queues(Settings.from_env(env))]
        assert len(queues) == 4

        broker_down = doctor(
            {**env, "KILLREPORT_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{CLOSED}/{vhost}"}
        )
        assert list(failed(broker_down)) == ["broker"] and "start RabbitMQ" in broker_down["broker"].fix

        checks = doctor(env)
        assert list(failed(checks)) == queues and all(checks[q].detail == "does not exist" for q in queues)
        assert "the first one declares the queues" in checks[queues[0]].fix

        connection = pika.BlockingConnection(pika.URLParameters(env["KILLREPORT_RABBITMQ_URL"]))
        Topology(Settings.from_env(env).broker.retry_delay).declare(connection.channel())
        connection.close()
        checks = doctor(env)
        assert list(failed(checks)) == queues
        assert all(checks[q].detail.startswith("no worker consumes it") for q in queues)
        assert "docker compose up -d --scale worker=N worker" in checks[queues[0]].fix

        stack.services.start("worker", env=env)
        try:
            wait_until(lambda: not failed(doctor(env)), "the worker's consumers on every queue", timeout=120)
            checks = doctor(env)
            assert set(checks) == ALL_UP_EMBEDDED | {"broker", *queues}
            assert all(checks[q].detail.startswith("1 consumer(s)") for q in queues)
        finally:
            assert stack.services.stop("worker") == 0, stack.services.log("worker")
    finally:
        rabbitmqctl("delete_vhost", vhost)


def test_the_esi_request_is_cheap_and_names_the_operator() -> None:
    with HttpReceiver(body=b"[99000001, 99000002]") as esi:
        settings = Settings.from_env(
            {"KILLREPORT_ESI_BASE_URL": esi.url, "KILLREPORT_ESI_CONTACT": "ops@example.com"}
        )
        check = check_esi(settings.esi)
        request = esi.next_request()
        assert esi.requests.empty(), "one request"
    assert check.ok and check.detail.startswith(f"{esi.url} listed 2 alliances in "), check.line()
    assert (request.method, request.path) == ("GET", "/alliances")
    assert request.headers["User-Agent"].startswith("killreport-assets/")
    assert "ops@example.com" in request.headers["User-Agent"]
