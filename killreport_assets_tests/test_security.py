"""Secrets only from the environment and never in logs, events, metadata or error messages; every
listener on loopback."""

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
import sqlalchemy as sa

from killreport_assets.resources import refresh_resources
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets_tests.rabbit_support import RABBITMQ_ADDRESS, RabbitStack, WorkerProcess, rabbitmqctl
from killreport_assets_tests.refresh_support import failure_message, materialize_all

# Distinctive tokens inside each secret: whatever form a secret is printed in (encoded or not), its
# token would show. The passwords hold "/" and "@", which naive URL parsing lets through whole.
DATABASE_PASSWORD = "dbpw7731/x@y"
QUERY_SECRET = "sslpw5520"
BROKER_PASSWORD = "mqpw8841/x@y"
TOKENS = ("dbpw7731", "sslpw5520", "mqpw8841")


def leaked(text: str) -> list[str]:
    return [token for token in TOKENS if token in text]


def test_a_refresh_and_a_worker_never_show_their_secrets(
    stack: RabbitStack, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The database password (with / and @), a secret query parameter (?sslpassword=, which libpq
    accepts and trust authentication ignores) and the broker password of a user made for this test:
    a RabbitMQ-mode refresh, a verbose worker, `killreport queues`, and a failing `killreport
    migrate` run with them, and none of the secrets appears in any output, log line, Dagster event,
    metadata or error message."""
    user = f"killreport_secret_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", user, BROKER_PASSWORD)
    try:
        rabbitmqctl("set_permissions", "-p", stack.vhost, user, ".*", ".*", ".*")
        database = sa.engine.make_url(stack.database_url)
        database_url = (
            f"postgresql+psycopg2://postgres:{quote(DATABASE_PASSWORD, safe='/')}@{database.host}:{database.port}"
            f"/{database.database}?sslpassword={QUERY_SECRET}"
        )
        broker_url = f"amqp://{user}:{quote(BROKER_PASSWORD, safe='')}@{RABBITMQ_ADDRESS}/{stack.vhost}"
        with SimulatorServer(SimulatorConfig(seed=41, alliances=30, corporations=150)) as simulator:
            env = {
                **stack.worker_env(simulator.url),
                "KILLREPORT_DATABASE_URL": database_url,
                "KILLREPORT_RABBITMQ_URL": broker_url,
            }
            worker = WorkerProcess(env, tmp_path / "secret-worker.log", ("--concurrency", "4"))
            try:
                stack.wait_for_consumers("killreport.corporations", 1)
                result = materialize_all(
                    refresh_resources(
                        database_url=database_url, esi_base_url=simulator.url, rabbitmq_url=broker_url
                    )
                )
                assert result.success, failure_message(result)
                queues = _cli(env, "queues")
                broken = {
                    **env,
                    "KILLREPORT_DATABASE_URL": database_url.replace(database.database, "no_such_db"),
                }
                migrate = _cli(broken, "migrate")
            finally:
                assert worker.stop() == 0
        events = "\n".join(dg.serialize_value(event) for event in result.all_events)
        captured = capfd.readouterr()
    finally:
        rabbitmqctl("delete_user", user)
    assert (
        "killreport.corporations" in queues.stdout
        and migrate.returncode != 0
        and "no_such_db" in migrate.stderr
    )
    assert "ASSET_MATERIALIZATION" in events and "consuming" in worker.log(), "there was output to search"
    outputs = {
        "worker log": worker.log(),
        "Dagster events (logs, metadata, failures)": events,
        "this process's stdout and stderr": captured.out + captured.err,
        "killreport queues": queues.stdout + queues.stderr,
        "killreport migrate (failing)": migrate.stdout + migrate.stderr,
    }
    assert {name: leaked(text) for name, text in outputs.items() if leaked(text)} == {}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "killreport_assets.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_simulator_listens_on_loopback_and_bounds_control_bodies() -> None:
    with SimulatorServer(SimulatorConfig(seed=1, alliances=3, corporations=10)) as simulator:
        assert simulator.url.startswith("http://127.0.0.1:")
        import httpx

        big = httpx.post(f"{simulator.url}/_sim/config", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
        assert big.status_code == 413, big.text
