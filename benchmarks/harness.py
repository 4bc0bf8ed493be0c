"""What every benchmark shares: a simulated ESI in its own process on loopback, a fresh PostgreSQL
database, and the refresh run the normal way: `dagster asset materialize -m killreport_assets
--select '*'`, in embedded mode or in RabbitMQ mode with N `killreport worker` processes (a vhost of
their own on the local broker), all given the same settings as an operator would.

Peak RSS: the Dagster command runs under GNU time (`%M`: the largest process of its tree); each
worker's VmHWM is read from /proc just before it is stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from killreport_assets.simulator import SimulatorConfig, SimulatorProcess
from killreport_assets_tests.databases import postgres_database
from killreport_assets_tests.rabbit_support import rabbitmqctl

BIN = Path(sys.executable).parent
# Dagster's step durations: 533ms, 5.6s, 4m52s, 1h4m.
STEP_TIME = re.compile(
    r'Finished execution of step "(\w+)" in (?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:([\d.]+)ms)?\.'
)
REAL_SIZE = {"alliances": 3616, "corporations": 20900}
ORIGINAL_SECONDS = 95 * 60  # the system this replaces, for about 25,000 requests


@dataclass
class Refresh:
    """One `dagster asset materialize` of everything, and what ESI and the processes saw."""

    exit_code: int
    wall_seconds: float
    esi: dict[str, Any]
    step_seconds: dict[str, float]
    dagster_peak_rss_mb: float
    worker_peak_rss_mb: list[float] = field(default_factory=list)
    stderr_tail: str = ""

    def timeline(self) -> list[int]:
        """Requests ESI received in each second of the run, from its first."""
        by_second = {int(k): v for k, v in self.esi["requests_by_second"].items()}
        if not by_second:
            return []
        first, last = min(by_second), max(by_second)
        return [by_second.get(second, 0) for second in range(first, last + 1)]


def universe(size: float = 1.0, **options: Any) -> SimulatorConfig:
    """The real-size universe (3,616 alliances, ~20,900 corporations), or `size` times it."""
    return SimulatorConfig(
        seed=1,
        alliances=round(REAL_SIZE["alliances"] * size),
        corporations=round(REAL_SIZE["corporations"] * size),
        **options,
    )


@contextmanager
def simulator(config: SimulatorConfig) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(config) as process:
        yield process


@contextmanager
def broker() -> Iterator[str]:
    """A vhost of its own on the local RabbitMQ; its AMQP URL."""
    vhost = f"killreport_bench_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@contextmanager
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def environment(
    database_url: str, esi_url: str, rps: float, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {
        **os.environ,
        "KILLREPORT_DATABASE_URL": database_url,
        "KILLREPORT_ESI_BASE_URL": esi_url,
        "KILLREPORT_ESI_MAX_RPS": str(rps),
        **(extra or {}),
    }
    for name in ("DAGSTER_HOME", "KILLREPORT_RABBITMQ_URL"):
        env.pop(name, None)
    return env


class Workers:
    """`killreport worker` processes, started with the deployment's settings."""

    def __init__(self, env: dict[str, str], count: int, log_folder: Path) -> None:
        self._logs = [(log_folder / f"worker-{n}.log").open("w") for n in range(count)]
        self.processes = [
            subprocess.Popen(
                [str(BIN / "killreport"), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for log in self._logs
        ]
        self._url = env["KILLREPORT_RABBITMQ_URL"]

    def wait_consuming(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self._consumers("killreport.corporations") < len(self.processes):
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start consuming within a minute")
            time.sleep(0.2)

    def _consumers(self, queue: str) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
        finally:
            if connection.is_open:
                connection.close()

    def peak_rss_mb(self) -> list[float]:
        return [_vm_hwm_mb(p.pid) for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()


def materialize(env: dict[str, str], esi: SimulatorProcess, workers: Workers | None = None) -> Refresh:
    """Run the refresh once; ESI's counters start at zero for it."""
    esi.reset_stats()
    with tempfile.TemporaryDirectory() as cwd:
        rss_file = Path(cwd) / "rss"
        command = [str(BIN / "dagster"), "asset", "materialize", "-m", "killreport_assets", "--select", "*"]
        started = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        dagster_rss = int(rss_file.read_text().split()[-1]) / 1024
    steps = {
        name: round(
            float(hours or 0) * 3600
            + float(minutes or 0) * 60
            + float(seconds or 0)
            + float(millis or 0) / 1000,
            2,
        )
        for name, hours, minutes, seconds, millis in STEP_TIME.findall(done.stderr)
    }
    return Refresh(
        exit_code=done.returncode,
        wall_seconds=round(wall, 2),
        esi=esi.stats(),
        step_seconds=steps,
        dagster_peak_rss_mb=round(dagster_rss, 1),
        worker_peak_rss_mb=[] if workers is None else workers.peak_rss_mb(),
        stderr_tail="" if done.returncode == 0 else done.stderr[-4000:],
    )


@contextmanager
def deployment(
    esi: SimulatorProcess, rps: float, workers: int, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[dict[str, str], Workers | None, str]]:
    """A fresh database, and in RabbitMQ mode (`workers` > 0) a vhost with the workers consuming;
    yields (the environment every process gets, the workers, the database URL)."""
    with database() as database_url, tempfile.TemporaryDirectory() as logs:
        env = environment(database_url, esi.url, rps, extra)
        if workers == 0:
            yield env, None, database_url
            return
        with broker() as amqp_url:
            env["KILLREPORT_RABBITMQ_URL"] = amqp_url
            pool = Workers(env, workers, Path(logs))
            try:
                pool.wait_consuming()
                yield env, pool, database_url
            finally:
                pool.stop()


def efficiency(requests: int, budget: float, wall: float) -> float:
    """(requests ÷ budget) ÷ wall: 1.0 is a refresh exactly as long as the budget allows."""
    return round(requests / budget / wall, 3)


def emit(record: dict[str, Any], out: Path | None) -> None:
    """Print the benchmark's one JSON line; also append it to `out`."""
    line = json.dumps(record, separators=(",", ":"))
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as file:
            file.write(line + "\n")


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0
