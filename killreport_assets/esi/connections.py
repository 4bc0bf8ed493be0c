"""HTTP connections lent one request at a time.

httpcore's connection pool serialises every request and every response close on one lock, and
under it re-checks each idle connection with a `select` call, releasing and re-taking the GIL per
connection. With 20 threads sharing one pool and other threads busy beside them (the writer, the
database, Dagster), threads spent about half their time queued on that lock. Here each request
borrows an `httpx.Client` of its own single connection from a lock-free queue and returns it;
the governor already bounds how many requests run at once, so the number of clients stays at that
bound (plus one for a probe).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx


class ConnectionLender:
    """Thread-safe. `make()` builds one client; it is asked for one only when none is idle."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self._make = make
        self._idle: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
        self._made: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def lend(self) -> Iterator[httpx.Client]:
        try:
            http = self._idle.get_nowait()
        except queue.Empty:
            http = self._new()
        try:
            yield http
        finally:
            self._idle.put(http)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            made, self._made = self._made, []
        for http in made:
            http.close()

    def _new(self) -> httpx.Client:
        http = self._make()
        with self._lock:
            if not self._closed:
                self._made.append(http)
                return http
        http.close()
        raise RuntimeError("the ESI client was closed: its connections are gone")
