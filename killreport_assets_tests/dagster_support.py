"""A real `dagster dev` (webserver, daemon, code server) for end-to-end tests, and the production
instance (deploy/dagster.yaml on a throw-away PostgreSQL database) for it to run on.

`dagster dev` maps SIGTERM onto its SIGINT handler, and a process started from a non-interactive
shell inherits SIGINT ignored, so it would ignore both and leak its children: the child gets SIGINT
back, its own process group, and is stopped by signalling that group (SIGKILL after a bound).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import sqlalchemy as sa

from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.ports import free_port

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
LOCATION = "killreport_assets"


def wait_until(probe: Callable[[], T | None], what: str, timeout: float, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None/False; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def production_home(folder: Path) -> Iterator[dict[str, str]]:
    """A DAGSTER_HOME holding deploy/dagster.yaml, on its own PostgreSQL database; yields the
    environment (DAGSTER_HOME, DAGSTER_PG_*, storage folders) every Dagster process needs."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", folder / "dagster.yaml")
    with postgres_database() as url:
        parts = sa.engine.make_url(url)
        yield {
            "DAGSTER_HOME": str(folder),
            "DAGSTER_PG_HOST": parts.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_USER": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": parts.password or "",
            "DAGSTER_PG_DB": parts.database or "",
            "DAGSTER_STORAGE_DIR": str(folder / "storage"),
            "DAGSTER_COMPUTE_LOGS_DIR": str(folder / "storage" / "compute_logs"),
        }


class DagsterDev:
    """`dagster dev -w workspace.yaml` on a free loopback port, output in `log_path`."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, startup_timeout: float = 180.0) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._process = start_group(
            [
                str(BIN / "dagster"),
                *("dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)),
            ],
            env=self.env,
            cwd=self.log_path.parent,
            log_path=self.log_path,
        )
        try:
            wait_until(self._code_loaded, "dagster dev to serve the code location", self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is not None:
            interrupt_group(self._process)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_for_daemons(self, timeout: float = 120.0) -> None:
        """Until every daemon the instance requires has sent a heartbeat."""

        def healthy() -> bool:
            statuses = self.graphql(_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return all(s["healthy"] for s in statuses if s["required"])

        wait_until(healthy, "every required daemon's heartbeat", timeout)

    def launch(self, job_name: str) -> str:
        """Launch `job_name` as the UI's launchpad does; its run id."""
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": job_name,
        }
        result = self.graphql(_LAUNCH, {"params": {"selector": selector, "runConfigData": {}}})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def wait_for_run(self, run_id_prefix: str, timeout: float = 300.0) -> dict[str, Any]:
        """The run whose id starts with `run_id_prefix`, once it has finished."""

        def finished() -> dict[str, Any] | None:
            runs = self.graphql(_RUNS)["runsOrError"]["results"]
            run = next((r for r in runs if r["runId"].startswith(run_id_prefix)), None)
            return run if run is not None and run["status"] in TERMINAL_RUN_STATUSES else None

        return wait_until(finished, f"run {run_id_prefix} to finish", timeout, interval=1.0)

    def _code_loaded(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {self._process.returncode}:\n{self.log_tail()}")
        try:
            entries = self.graphql(_WORKSPACE)["workspaceOrError"]["locationEntries"]
        except httpx.HTTPError:
            return False
        for entry in entries:
            if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError":
                raise AssertionError(
                    f"code location {entry['name']} failed to load: {entry['locationOrLoadError']}"
                )
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def _restore_sigint() -> None:
    """In the child before exec: a background shell's children inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_group(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in a process group of its own with SIGINT restored, output to `log_path`.

    `dagster dev` maps SIGTERM onto SIGINT's handler, so a child that inherited SIGINT ignored
    would ignore both and leak its webserver, daemon and code server."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_restore_sigint,
        )


def interrupt_group(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGINT the whole group, SIGKILL it if it has not exited within `timeout`; the exit code."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    return process.returncode


_WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
_DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
_LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
_RUNS = "{ runsOrError(limit: 20) { ... on Runs { results { runId status jobName } } } }"
