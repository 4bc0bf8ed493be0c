"""The Docker deployment, checked without a Docker engine: the compose file (through `docker compose
config` when a compose client is installed, else parsed here) against the code it runs, its variables
against the settings and the docs, the image's install step, and the production dagster.yaml loaded
against a real PostgreSQL.

The services actually starting from these commands and passing these healthchecks is shown by
test_doctor.py, whose running stack is built from this compose file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from killreport_assets.cli import build_parser
from killreport_assets.registry import REGISTRY
from killreport_assets.schedules import REFRESH_TAG, daily_refresh_job
from killreport_assets_tests.compose_support import COMPOSE_FILE, SERVICES, compose_client, interpolate
from killreport_assets_tests.dagster_support import BIN, REPO, production_home

ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
IMAGE_HOME = "/opt/dagster/dagster_home"
IMAGE_WORKSPACE = f"{IMAGE_HOME}/workspace.yaml"
IMAGE_STORAGE = "/opt/dagster/storage"
# Variables of Compose itself, read from .env but never interpolated into the file.
COMPOSE_OWN = {"COMPOSE_PROJECT_NAME"}
FILLED = {"POSTGRES_PASSWORD": "pw1", "RABBITMQ_PASSWORD": "pw2", "KILLREPORT_ESI_CONTACT": "ops@example.com"}


CLIENT = compose_client()


@pytest.fixture(scope="module", params=["parsed here", *([" ".join(CLIENT)] if CLIENT else [])])
def compose(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as Compose resolves it with .env.example (secrets filled in), sim profile on:
    interpolated here, and normalised by the compose client as well where one is installed."""
    values = env_example_values() | FILLED
    if CLIENT is None or request.param == "parsed here":
        return interpolate(COMPOSE_FILE.read_text(), values)
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    done = subprocess.run(
        [
            *CLIENT,
            "--project-directory",
            str(REPO),
            "--env-file",
            str(env_file),
            "--profile",
            "sim",
            "config",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def env_example_values() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    )


def test_services_health_and_exposure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["esi-sim"]["profiles"] == ["sim"], "the simulator only runs for a dry run"
    assert all("profiles" not in s for name, s in services.items() if name != "esi-sim")
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: a fixed name blocks --scale and a second stack"
        if name != "worker":  # nothing waits on workers; RabbitMQ shows their consumers
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], dependency
    assert set(services["webserver"]["depends_on"]) == {"postgres", "user-code"}
    assert set(services["daemon"]["depends_on"]) == {"postgres", "user-code"}
    assert set(services["worker"]["depends_on"]) == {"postgres", "rabbitmq"}
    published = {name: [_published(p) for p in s.get("ports", [])] for name, s in services.items()}
    assert {name: ports for name, ports in published.items() if ports} == {
        "webserver": [("127.0.0.1", 3000, 3000)],
        "rabbitmq": [("127.0.0.1", 15672, 15672)],
    }, "the UI and the management UI, on loopback only"
    assert (
        services["rabbitmq"]["image"].startswith("rabbitmq:3")
        and "management" in services["rabbitmq"]["image"]
    )


def test_commands_exist_in_the_code(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for executable in ("dagster", "dagster-webserver", "dagster-daemon", "killreport"):
        assert (BIN / executable).exists(), executable
    (killreport,) = importlib.metadata.entry_points(group="console_scripts", name="killreport")
    assert killreport.value == "killreport_assets.cli:main"

    assert services["worker"]["command"] == ["killreport", "worker"]
    assert build_parser().parse_args(["worker"]).command == "worker"
    sim = services["esi-sim"]["command"]
    assert sim[:2] == ["killreport", "esi-sim"]
    sim_args = build_parser().parse_args(sim[1:])
    assert (sim_args.host, sim_args.allow_remote, sim_args.port) == ("0.0.0.0", True, 8080)

    grpc = services["user-code"]["command"]
    assert grpc[:3] == ["dagster", "api", "grpc"] and _option(grpc, "-h") == "0.0.0.0"
    assert isinstance(importlib.import_module(_option(grpc, "-m")).defs, dg.Definitions)

    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())["load_from"]
    assert workspace == [
        {
            "grpc_server": {
                "host": "user-code",
                "port": int(_option(grpc, "-p")),
                "location_name": "killreport_assets",
            }
        }
    ], "the webserver and daemon load the code from the user-code service, under the local location name"
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        assert _option(services[name]["command"], "-w") == IMAGE_WORKSPACE
    assert _option(services["webserver"]["command"], "-p") == "3000"


def test_the_image_holds_the_instance_and_the_shared_storage(compose: dict[str, Any]) -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.$", dockerfile, re.M)
    assert f"DAGSTER_HOME={IMAGE_HOME}" in dockerfile
    assert f"COPY deploy/dagster.yaml deploy/workspace.yaml {IMAGE_HOME}/" in dockerfile
    assert f"DAGSTER_STORAGE_DIR={IMAGE_STORAGE}" in dockerfile
    assert f"DAGSTER_COMPUTE_LOGS_DIR={IMAGE_STORAGE}/compute_logs" in dockerfile
    for name in ("user-code", "webserver", "daemon"):
        mounts = compose["services"][name]["volumes"]
        assert any(_mount_target(m) == IMAGE_STORAGE for m in mounts), f"{name} shares the step logs"
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "killreport_assets_tests"} <= ignored


def test_variables_are_the_documented_ones() -> None:
    """Every variable the code reads is passed to the services, listed in .env.example and documented;
    every variable the compose file interpolates is in .env.example, and nothing more."""
    code = code_variables()
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    passed = set(raw["x-killreport-env"])
    assert passed == code, f"missing: {sorted(code - passed)}, unknown: {sorted(passed - code)}"

    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    listed = set(env_example_values())
    assert interpolated == listed - COMPOSE_OWN, (
        sorted(interpolated - listed),
        sorted(listed - interpolated),
    )
    example = ENV_EXAMPLE.read_text()
    assert all(name in example for name in code), sorted(n for n in code if n not in example)
    assert not re.search(r"(PASSWORD|WEBHOOK_URL)=\S", example), ".env.example carries no secret"

    docs = "".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    undocumented = sorted(name for name in code if f"`{name}`" not in docs)
    assert not undocumented, f"not in the README's or docs/ configuration tables: {undocumented}"

    instance_vars = set(re.findall(r"\{env: ([A-Z_]+)\}", (REPO / "deploy" / "dagster.yaml").read_text()))
    image_vars = {"DAGSTER_STORAGE_DIR", "DAGSTER_COMPUTE_LOGS_DIR"}
    assert instance_vars == set(raw["x-dagster-env"]) | image_vars


def test_the_image_install_step_yields_a_complete_package(tmp_path: Path) -> None:
    """`pip install .` of exactly what the Dockerfile copies: migrations and the command included."""
    context = tmp_path / "context"
    context.mkdir()
    for sources in re.findall(r"^COPY (.+) \./\S*$", DOCKERFILE.read_text(), re.M):
        for source in sources.split():
            path = REPO / source
            copy = shutil.copytree if path.is_dir() else shutil.copy
            copy(path, context / source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("killreport_assets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "killreport_assets/storage/migrations/env.py" in names
    assert any(n.startswith("killreport_assets/storage/migrations/versions/0001_") for n in names)
    assert {
        "killreport_assets/doctor/__init__.py",
        "killreport_assets/sensors.py",
        "killreport_assets/simulator/app.py",
    } <= names
    assert "killreport = killreport_assets.cli:main" in entry_points


def test_the_production_instance_config_loads_against_postgres(tmp_path: Path) -> None:
    """deploy/dagster.yaml as the containers use it: Dagster validates it, connects to a throw-away
    PostgreSQL database and creates its schema."""
    with production_home(tmp_path / "dagster_home") as env:
        done = subprocess.run(
            [str(BIN / "dagster"), "instance", "info"],
            env={**_without_dagster_home(), **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "run_storage: PostgresRunStorage" in done.stdout
        assert re.search(r"run_storage:\n\s+current: (\w+)\n\s+latest: \1", done.stdout), "schema created"

        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
                assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
                queue = instance.get_concurrency_config().run_queue_config
                assert queue.tag_concurrency_limits == [{"key": REFRESH_TAG, "limit": 1}]
                assert REFRESH_TAG in daily_refresh_job.tags, "the limit keys on the refresh job's tag"
                assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
                assert instance.run_retries_retry_on_asset_or_op_failure is False
                assert instance.run_monitoring_enabled
                assert "MONITORING" in instance.get_required_daemon_types()
                assert instance.root_directory == env["DAGSTER_STORAGE_DIR"]


def test_local_development_does_not_read_the_production_config() -> None:
    """Without DAGSTER_HOME, `dagster dev` reads ./dagster.yaml: a production one at the top level
    would make every local command need PostgreSQL."""
    assert not (REPO / "dagster.yaml").exists()


def code_variables() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "killreport_assets").rglob("*.py"):
        names |= set(re.findall(r"[\"'](KILLREPORT_[A-Z0-9_]+)[\"']", path.read_text()))
    return names | {kind.timeout_variable for kind in REGISTRY}  # derived from each kind's name


def _published(port: str | dict[str, Any]) -> tuple[str, int, int]:
    """(host ip, published, target) from the short form or Compose's normalised long form."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), int(port["published"]), int(port["target"])
    host_ip, published, target = port.removesuffix("/tcp").rsplit(":", 2)
    return host_ip, int(published), int(target)


def _mount_target(mount: str | dict[str, Any]) -> str:
    return mount["target"] if isinstance(mount, dict) else mount.split(":")[1]


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _without_dagster_home() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
