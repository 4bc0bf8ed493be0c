"""Shared helpers for the ESI tests: a scriptable stub ESI on loopback and a manual clock.

Holds no tests itself. The stub is a real HTTP server (stdlib `ThreadingHTTPServer` on
127.0.0.1:0), so retries, pauses and conditional requests are exercised over real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ManualClock:
    """A `Clock` whose time moves only when someone sleeps on it (or `advance` is called)."""

    def __init__(self, start: datetime = datetime(2026, 8, 1, 0, 0, tzinfo=UTC)) -> None:
        self._lock = threading.Lock()
        self._start = start
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._elapsed += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(value: Any, status: int = 200, **headers: str) -> Reply:
    """A JSON reply; keyword headers use underscores for dashes (`Cache_Control="max-age=60"`)."""
    named = {name.replace("_", "-"): str(v) for name, v in headers.items()}
    return Reply(
        status, json.dumps(value).encode(), {"Content-Type": "application/json; charset=UTF-8", **named}
    )


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    arrived: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Request], Reply]


def sequence(*replies: Reply) -> Responder:
    """Answer with `replies` in order, repeating the last one."""
    remaining = list(replies)
    lock = threading.Lock()

    def respond(_: Request) -> Reply:
        with lock:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return respond


class StubEsi:
    """A loopback HTTP server answering every request with `self.respond(request)`."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda _: json_reply([]))
        self.requests: list[Request] = []
        self.connections = 0  # TCP connections accepted
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def setup(self) -> None:
                super().setup()
                with stub._lock:
                    stub.connections += 1

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with stub._lock:
                    stub.requests.append(request)
                reply = stub.respond(request)
                self.send_response_only(reply.status)
                headers = {"Date": format_datetime(datetime.now(UTC), usegmt=True), **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                try:
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> StubEsi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(respond: Responder | None = None) -> Iterator[StubEsi]:
    """Body of a pytest fixture: a running stub, shut down afterwards."""
    with StubEsi(respond) as stub:
        yield stub
