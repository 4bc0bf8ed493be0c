"""A local HTTP endpoint that records what it is sent: a stand-in for a Slack or Discord webhook (and
for ESI, when a test needs to see a client's request headers).

`status` is what every request is answered with; `hang=True` answers nothing until the receiver
stops, to exercise a client's timeout.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    def __init__(self, *, status: int = 200, body: bytes = b"ok", hang: bool = False) -> None:
        self.status = status
        self.body = body
        self.hang = hang
        self.requests: queue.Queue[Received] = queue.Queue()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def next_request(self, timeout: float = 30.0) -> Received:
        """The next recorded request; fails after `timeout` seconds without one."""
        try:
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no request reached {self.url} within {timeout:.0f} s") from None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._record()

            def do_POST(self) -> None:
                self._record()

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.put(
                    Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                if receiver.hang:
                    receiver._release.wait()
                    return
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the tests look at `requests`, not at an access log."""

        return Handler
