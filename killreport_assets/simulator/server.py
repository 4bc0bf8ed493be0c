"""Running the simulator: in a background thread of this process, or as a separate process.

`SimulatorServer` is the quick one for tests (direct access to the state, stats and day switching);
`SimulatorProcess` keeps the simulator off the client's GIL and talks to it over `/_sim/*` only.
Both expose the same helper methods, so a test can use either.
"""

from __future__ import annotations

import asyncio
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import uvicorn

from killreport_assets.simulator.app import create_app
from killreport_assets.simulator.config import SimulatorConfig, format_downtime
from killreport_assets.simulator.state import SimulatorState
from killreport_assets.simulator.universe import Universe

T = TypeVar("T")
LISTENING = re.compile(r"^listening on (http://\S+)$")


class _Uvicorn(uvicorn.Server):
    """Signals readiness (and its loop) once the socket listens, instead of anyone sleeping on it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.loop = asyncio.get_running_loop()
            self.ready.set()


class SimulatorServer:
    """Serve the simulator from a background thread on loopback; use as a context manager.

    `universe` defaults to the one `config` describes (seed, sizes, day); a given universe is served
    as is, and `set_day()` moves it forward from there. `clock` replaces
    `time.time` for limits, expiry and downtime, so tests can move time without sleeping.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        universe: Universe | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        startup_timeout: float = 60.0,
    ) -> None:
        self.state = SimulatorState(config or SimulatorConfig(), universe, clock=clock)
        self.app = create_app(self.state)
        self.host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None or not self._server.started:
            raise RuntimeError("simulator is not running")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def config(self) -> SimulatorConfig:
        return self.state.config

    @property
    def universe(self) -> Universe:
        return self.state.universe

    def start(self) -> Self:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            date_header=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        server = _Uvicorn(config)
        thread = threading.Thread(target=server.run, name="esi-simulator", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.ready.wait(0.05):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator failed to start on {self.host}:{self._port}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the server's event loop, which owns the state."""
        server = self._server
        if server is None or server.loop is None or threading.current_thread() is self._thread:
            return fn(*args)

        async def invoke() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), server.loop).result(timeout=120)

    # Same helpers as SimulatorProcess.
    def stats(self) -> dict[str, Any]:
        return self.call(lambda: {**self.state.stats.to_json(), "day": self.state.universe.day})

    def reset_stats(self) -> None:
        self.call(self.state.reset_stats)

    def set_day(self, day: int) -> Universe:
        return self.call(self.state.set_day, day)

    def configure(self, **changes: Any) -> SimulatorConfig:
        return self.call(self.state.update_config, changes)

    def force_downtime(self, seconds: float) -> None:
        self.call(self.state.force_downtime, seconds)

    def exhaust_error_limit(self, ip: str = "127.0.0.1") -> int:
        return self.call(self.state.exhaust_error_limit, ip)

    def reset_limits(self) -> None:
        self.call(self.state.reset_limits)

    def universe_json(self) -> dict[str, Any]:
        return self.call(lambda: self.state.universe.to_json())


class SimulatorProcess:
    """Run `python -m killreport_assets.simulator` as a child process on a free loopback port."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
        python: str = sys.executable,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self._startup_timeout = startup_timeout
        self._python = python
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: deque[str] = deque(maxlen=200)  # the child's last lines, for diagnostics
        self._url: str | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("simulator process is not running")
        return self._url

    def argv(self) -> list[str]:
        return [
            self._python,
            "-m",
            "killreport_assets.simulator",
            "--host",
            self.host,
            "--port",
            "0",
            *self.config.to_argv(),
        ]

    def start(self) -> Self:
        process = subprocess.Popen(
            self.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        self._process = process
        self._lines = queue.Queue()
        threading.Thread(
            target=self._pump, args=(process, self._lines), name="esi-simulator-output", daemon=True
        ).start()
        deadline = time.monotonic() + self._startup_timeout
        while self._url is None:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError("simulator process did not start:\n" + "\n".join(self.output))
            found = LISTENING.match(line)
            if found:
                self._url = found.group(1)
        self._client = httpx.Client(base_url=self._url, timeout=120, trust_env=False)
        return self

    def _pump(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        """Forward the child's output until the URL is known; keep draining so its pipe never fills."""
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line.rstrip("\n"))
            if self._url is None:
                lines.put(line.strip())
        lines.put(None)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status once stopped (0 after a clean SIGTERM shutdown)."""
        return None if self._process is None else self._process.poll()

    def admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call `/_sim/<path>` and return its JSON."""
        if self._client is None:
            raise RuntimeError("simulator process is not running")
        response = self._client.request(method, f"/_sim/{path}", json=payload)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "stats")

    def reset_stats(self) -> None:
        self.admin("POST", "reset-stats")

    def set_day(self, day: int) -> dict[str, Any]:
        return self.admin("POST", "day", {"day": day})

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Same keywords as `SimulatorServer.configure`; returns the new config as JSON."""
        payload = {**changes}
        for name, value in changes.items():
            if isinstance(value, set | frozenset):
                payload[name] = sorted(value)
            elif name == "downtime" and isinstance(value, tuple):
                payload[name] = format_downtime(value)
        return self.admin("POST", "config", payload)

    def force_downtime(self, seconds: float) -> None:
        self.admin("POST", "downtime", {"seconds": seconds})

    def exhaust_error_limit(self) -> int:
        return self.admin("POST", "exhaust-error-limit")["reset"]

    def reset_limits(self) -> None:
        self.admin("POST", "reset-limits")

    def universe_json(self) -> dict[str, Any]:
        return self.admin("GET", "universe")
