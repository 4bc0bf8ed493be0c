"""Thread-safe counters behind `EsiClient.stats()`."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Mapping


class ClientStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_status: Counter[int] = Counter()
        self._by_outcome: Counter[str] = Counter()
        self._transport_errors: Counter[str] = Counter()
        self._waits: defaultdict[str, float] = defaultdict(float)
        self._retries = 0
        self._max_attempts_used = 0
        self._names_unresolved = 0

    def exchange(self, status: int | None, error: str | None, waits: Mapping[str, float]) -> None:
        """One HTTP exchange: its status (or transport error) and what it waited for."""
        with self._lock:
            if status is not None:
                self._by_status[status] += 1
            if error is not None:
                self._transport_errors[error] += 1
            for reason, seconds in waits.items():
                self._waits[reason] += seconds

    def retry(self, reason: str, delay: float) -> None:
        with self._lock:
            self._retries += 1
            self._waits[reason] += delay

    def finished(self, attempts: int) -> None:
        with self._lock:
            self._max_attempts_used = max(self._max_attempts_used, attempts)

    def outcome(self, outcome: str) -> None:
        with self._lock:
            self._by_outcome[outcome] += 1

    def unresolved(self, count: int) -> None:
        with self._lock:
            self._names_unresolved += count

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "requests": sum(self._by_status.values()) + sum(self._transport_errors.values()),
                "by_status": dict(sorted(self._by_status.items())),
                "by_outcome": dict(self._by_outcome),
                "transport_errors": dict(self._transport_errors),
                "retries": self._retries,
                "max_attempts_used": self._max_attempts_used,
                "waits": dict(self._waits),
                "error_limited_420": self._by_status[420],
                "rate_limited_429": self._by_status[429],
                "names_unresolved": self._names_unresolved,
            }
