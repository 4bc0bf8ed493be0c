"""A small TCP proxy on loopback for network-fault tests: forwards to a target; `cut()` resets every
open connection and refuses new ones until `restore()`; `hold()` stops forwarding (a partition that
heals: bytes wait, connections stay open) until `release()`; `latency` delays every chunk."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self.latency = 0.0  # seconds added before each forwarded chunk
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed.set()
        self._listener.close()
        self._reset_all()
        self._thread.join(5)

    def cut(self) -> None:
        """Reset every connection (RST, as a dropped link or a restarted firewall does) and refuse new ones."""
        self._cut.set()
        self._reset_all()

    def restore(self) -> None:
        self._cut.clear()

    def hold(self) -> None:
        """Stop forwarding in both directions; nothing is lost or reset."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                if self.latency:
                    time.sleep(self.latency)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with self._lock:
                    self._open.discard(end)
                _reset(end)

    def _reset_all(self) -> None:
        with self._lock:
            ends, self._open = set(self._open), set()
        for end in ends:
            _reset(end)


def _reset(sock: socket.socket) -> None:
    # shutdown first: closing a socket another thread is blocked in recv() on leaves the connection
    # open on Linux, and the peer would wait forever instead of seeing it cut.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
