"""ESI's two limiters (esi.md §4): the legacy per-IP error limit and the floating-window token buckets.

Both take `now` and the current limits as arguments so the simulator's clock and runtime config
changes apply immediately, and so tests can drive them with a fake clock.
"""

from __future__ import annotations

import math
from collections import deque


def token_cost(status: int) -> int:
    """DOCS-RL: 2XX = 2, 3XX = 1, 4XX = 5 (but not 429), 5XX = 0."""
    if status < 300:
        return 2
    if status < 400:
        return 1
    if status < 500:
        return 0 if status == 429 else 5
    return 0


class ErrorLimiter:
    """At most `limit` 4xx/5xx answers per client IP per fixed window aligned to multiples of `window` since the epoch."""

    def __init__(self) -> None:
        self._errors: dict[str, tuple[int, int]] = {}  # ip -> (window index, errors in it)

    def _count(self, ip: str, now: float, window: int) -> int:
        entry = self._errors.get(ip)
        return entry[1] if entry is not None and entry[0] == int(now // window) else 0

    def remaining(self, ip: str, now: float, window: int, limit: int) -> int:
        return max(0, limit - self._count(ip, now, window))

    @staticmethod
    def reset_in(now: float, window: int) -> int:
        """Whole seconds until the current window ends (at least 1)."""
        return max(1, math.ceil((int(now // window) + 1) * window - now))

    def record_error(self, ip: str, now: float, window: int) -> None:
        self._errors[ip] = (int(now // window), self._count(ip, now, window) + 1)

    def exhaust(self, ip: str, now: float, window: int, limit: int) -> None:
        self._errors[ip] = (int(now // window), max(limit, self._count(ip, now, window)))

    def clear(self) -> None:
        self._errors.clear()


class TokenBuckets:
    """One bucket per (group, client IP); spent tokens come back one window after they were spent."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._used: dict[tuple[str, str], int] = {}

    def used(self, group: str, ip: str, now: float, window: int) -> int:
        key = (group, ip)
        spent = self._spent.get(key)
        if not spent:
            return 0
        while spent and spent[0][0] + window <= now:
            self._used[key] -= spent.popleft()[1]
        return self._used[key]

    def remaining(self, group: str, ip: str, now: float, window: int, max_tokens: int) -> int:
        return max(0, max_tokens - self.used(group, ip, now, window))

    def retry_after(self, group: str, ip: str, now: float, window: int, max_tokens: int) -> int:
        """Whole seconds until at least one token is back."""
        used = self.used(group, ip, now, window)
        for spent_at, tokens in self._spent.get((group, ip), ()):
            used -= tokens
            if used < max_tokens:
                return max(1, math.ceil(spent_at + window - now))
        return 1

    def spend(self, group: str, ip: str, now: float, tokens: int) -> None:
        if tokens <= 0:
            return
        key = (group, ip)
        self._spent.setdefault(key, deque()).append((now, tokens))
        self._used[key] = self._used.get(key, 0) + tokens

    def exhaust(self, group: str, ip: str, now: float, window: int, max_tokens: int) -> None:
        self.spend(group, ip, now, self.remaining(group, ip, now, window, max_tokens))

    def clear(self) -> None:
        self._spent.clear()
        self._used.clear()
