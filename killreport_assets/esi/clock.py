"""Injectable time.

The governor and the client read and spend time only through a `Clock`, so tests can drive
backoff, pacing and pauses instantly with a manual clock while production uses the real one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a steady clock; used for every interval and deadline."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall-clock time; used for cache expiry and the downtime window."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` (no-op when ≤ 0)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
