"""docker-compose.yml without a Docker engine: Compose's variable interpolation, the compose client
when one is installed, and `LocalStack`, which runs services as local processes from the file's own
commands and waits on the file's own healthchecks (container hosts and ports swapped for loopback
ones), so that the commands and healthchecks are known to work, not only to parse.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from killreport_assets_tests.dagster_support import (
    BIN,
    REPO,
    free_port,
    interrupt_group,
    start_group,
    wait_until,
)

COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = frozenset({"postgres", "rabbitmq", "user-code", "webserver", "daemon", "worker", "esi-sim"})
IMAGE_WORKSPACE = "/opt/dagster/dagster_home/workspace.yaml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


def compose_client() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose`, whichever can run `config` here."""
    for command in (["docker", "compose"], ["docker-compose"]):
        try:
            done = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return command
    return None


def interpolate(text: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as Compose reads it with `env` as its .env file: values are interpolated
    after the YAML is parsed (anchors and merge keys resolved)."""

    def value(match: re.Match[str]) -> str:
        name, colon, kind, argument = match.groups()
        if name is None:
            return "$"
        current = env.get(name)
        missing = current is None or (colon == ":" and current == "")
        if kind == "?" and missing:
            raise ValueError(f"required variable {name} is missing: {argument}")
        if kind == "-" and missing:
            return argument
        return current or ""

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return _VARIABLE.sub(value, node)
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(yaml.safe_load(text))


class LocalStack:
    """Compose services started as local processes, each from its compose command.

    `ports` maps a container port to the loopback port it gets here; the compose hostnames in a
    command (0.0.0.0) become 127.0.0.1 and the image's workspace path becomes `workspace`.
    """

    def __init__(
        self, env: Mapping[str, str], folder: Path, workspace: Path, ports: Mapping[int, int]
    ) -> None:
        self.compose = interpolate(
            COMPOSE_FILE.read_text(), {"POSTGRES_PASSWORD": "x", "RABBITMQ_PASSWORD": "x"}
        )
        self.env = dict(env)
        self.folder = folder
        self.workspace = workspace
        self.ports = dict(ports)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)

    def command(self, service: str, *extra: str) -> list[str]:
        return self.localise(self.compose["services"][service]["command"]) + list(extra)

    def start(
        self, service: str, *extra: str, env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> None:
        """Start `service` and wait until its compose healthcheck passes (if it has one)."""
        self.processes[service] = start_group(
            self.command(service, *extra),
            env={**self.env, **(env or {})},
            cwd=self.folder,
            log_path=self.folder / f"{service}.log",
        )
        healthcheck = self.compose["services"][service].get("healthcheck")
        if healthcheck is not None:
            wait_until(lambda: self.healthy(service), f"the {service} healthcheck", timeout, interval=1.0)

    def healthy(self, service: str) -> bool:
        process = self.processes[service]
        if process.poll() is not None:
            raise AssertionError(f"{service} exited with {process.returncode}:\n{self.log(service)}")
        kind, *argv = self.compose["services"][service]["healthcheck"]["test"]
        assert kind == "CMD", f"{service}: run CMD-SHELL healthchecks in their container only"
        done = subprocess.run(self.localise(argv), env=self.env, capture_output=True, timeout=60)
        return done.returncode == 0

    def stop(self, service: str) -> int:
        return interrupt_group(self.processes.pop(service))

    def log(self, service: str) -> str:
        return (self.folder / f"{service}.log").read_text(errors="replace")[-5000:]

    def localise(self, argv: list[str]) -> list[str]:
        """A container's command made runnable on this host."""
        local = []
        for arg in argv:
            if arg in ("dagster", "dagster-webserver", "dagster-daemon", "killreport"):
                arg = str(BIN / arg)
            elif arg == "python":
                arg = sys.executable
            elif arg == "0.0.0.0":
                arg = "127.0.0.1"
            elif arg == IMAGE_WORKSPACE:
                arg = str(self.workspace)
            elif arg.isdigit() and int(arg) in self.ports:
                arg = str(self.ports[int(arg)])
            for container, here in self.ports.items():
                arg = arg.replace(f"127.0.0.1:{container}", f"127.0.0.1:{here}")
            local.append(arg)
        return local


def local_workspace(folder: Path, grpc_port: int) -> Path:
    """deploy/workspace.yaml with the user-code service's address replaced by loopback."""
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    server.update(host="127.0.0.1", port=grpc_port)
    path = folder / "workspace.yaml"
    path.write_text(yaml.safe_dump(workspace))
    return path


def loopback_ports(*container_ports: int) -> dict[int, int]:
    return {port: free_port() for port in container_ports}
