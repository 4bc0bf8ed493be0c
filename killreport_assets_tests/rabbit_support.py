"""RabbitMQ-mode test harness: a throw-away vhost and database per test, worker subprocesses, and
bounded waits on observable state (ledger rows, queue counts) instead of sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pika
import pika.exceptions

from killreport_assets.resources import refresh_resources
from killreport_assets.storage import StepProgress, Storage
from killreport_assets_tests.databases import postgres_database

RABBITMQ_ADDRESS = os.environ.get("KILLREPORT_TEST_RABBITMQ_ADDRESS", "127.0.0.1:5672")
# What every process of a test (the asset in this one, the workers in theirs) runs with.
TEST_ENV = {
    "KILLREPORT_ESI_MAX_RPS": "400",
    "KILLREPORT_PROGRESS_INTERVAL_SECONDS": "2",
    "KILLREPORT_RETRY_DELAY_SECONDS": "1",
    "KILLREPORT_MAX_ATTEMPTS": "3",
}


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    """Run `rabbitmqctl` (through `sudo -n` unless root: it needs the broker's Erlang cookie)."""
    command = ["rabbitmqctl", *args]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 60.0, interval: float = 0.05
) -> None:
    """Poll `condition` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """`python -m killreport_assets.cli -v worker ...` (or another module that ends in the same CLI)
    with its output in a log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        args: tuple[str, ...],
        module: str = "killreport_assets.cli",
    ) -> None:
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "-v", "worker", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, and the exit code once it has finished or returned its in-flight jobs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)


class RabbitStack:
    """A fresh vhost and PostgreSQL database (or `database_url`), the workers started on them, and
    helpers to look at both.

    On exit every worker still running gets SIGTERM and must exit 0; the vhost and database are dropped.
    """

    def __init__(self, tmp_path: Path, database_url: str | None = None) -> None:
        self._tmp_path = tmp_path
        self.vhost = f"killreport_test_{uuid.uuid4().hex[:12]}"
        self.url = f"amqp://guest:guest@{RABBITMQ_ADDRESS}/{self.vhost}"
        self.workers: list[WorkerProcess] = []
        self._database = postgres_database() if database_url is None else nullcontext(database_url)
        self.database_url = ""
        self.storage: Storage | None = None

    def __enter__(self) -> Self:
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self.database_url = self._database.__enter__()
        self.storage = Storage.open(self.database_url)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            codes = {w.log_path.name: w.stop() for w in self.workers if w.process.returncode is None}
            if exc is None:
                assert all(code == 0 for code in codes.values()), f"workers must stop cleanly: {codes}"
        finally:
            if self.storage is not None:
                self.storage.dispose()
            self._database.__exit__(exc_type, exc, tb)
            rabbitmqctl("delete_vhost", self.vhost)

    def worker_env(self, esi_url: str) -> dict[str, str]:
        return {
            **TEST_ENV,
            **os.environ,  # after TEST_ENV: a test's own settings (monkeypatched) reach the workers
            "KILLREPORT_DATABASE_URL": self.database_url,
            "KILLREPORT_RABBITMQ_URL": self.url,
            "KILLREPORT_ESI_BASE_URL": esi_url,
        }

    def worker_log(self, name: str | None = None) -> Path:
        return self._tmp_path / f"worker-{name or len(self.workers) + 1}.log"

    def start_worker(self, esi_url: str, *args: str, module: str = "killreport_assets.cli") -> WorkerProcess:
        worker = WorkerProcess(self.worker_env(esi_url), self.worker_log(), args, module)
        self.workers.append(worker)
        return worker

    def resources(self, esi_url: str) -> Mapping[str, Any]:
        return refresh_resources(
            database_url=self.database_url,
            esi_base_url=esi_url,
            rabbitmq_url=self.url,
            poll_interval_seconds=0.05,
        )

    def queue(self, name: str) -> tuple[int, int]:
        """(ready messages, consumers) of a queue, by passive declare; (0, 0) before it exists."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ok = connection.channel().queue_declare(name, passive=True).method
            return ok.message_count, ok.consumer_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            return 0, 0
        finally:
            connection.close()

    def wait_for_consumers(self, queue: str, count: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.queue(queue)[1] == count, f"{count} consumer(s) on {queue}", timeout)

    def progress(self, step: str, refresh_id: str | None = None) -> StepProgress:
        """A step's ledger progress in `refresh_id`, or in the latest refresh that reached the step."""
        assert self.storage is not None
        if refresh_id is None:
            refresh_id = self.storage.ledger.latest_refresh(step=step)
            if refresh_id is None:
                return StepProgress(total=0)
        return self.storage.ledger.progress(refresh_id, step)
