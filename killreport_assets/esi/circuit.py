"""The circuit breaker: when most recent ESI answers are failures, stop sending and probe.

Closed, every request goes. When at least `trip_share` of the last `window` answers (with at least
`min_samples` of them) were 5xx, timeouts or connection errors, or a 502/503 arrived in the daily
downtime, the circuit opens: requests wait, and one probe at a time is let through after an
interval that doubles up to `max_probe` (a fixed, gentler interval in the downtime). The first
success closes the circuit for everyone, so a two-minute outage costs two minutes, not the rest of
a window, and an hours-long one costs a probe a minute instead of the error budget.

Not thread-safe on its own: the governor calls it under its lock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass
class _Open:
    reason: str
    since: float
    interval: float
    ceiling: float
    next_probe: float
    probing: bool = False


class Circuit:
    def __init__(
        self,
        *,
        window: int = 20,
        min_samples: int = 10,
        trip_share: float = 0.8,
        first_probe: float = 5.0,
        max_probe: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._recent: deque[bool] = deque(maxlen=window)
        self._min_samples = min_samples
        self._trip_share = trip_share
        self._first_probe = first_probe
        self._max_probe = max_probe
        self._rng = rng or random.Random()
        self._open: _Open | None = None

    @property
    def reason(self) -> str | None:
        """Why the circuit is open; None while closed."""
        return None if self._open is None else self._open.reason

    def admit(self, now: float) -> tuple[float | None, bool]:
        """(until when to wait, None to go now; whether the request going now is the probe)."""
        state = self._open
        if state is None:
            return None, False
        if not state.probing and now >= state.next_probe:
            state.probing = True
            return None, True
        return max(state.next_probe, now + 0.05), False

    def record(self, ok: bool, now: float) -> tuple[str, float] | None:
        """Learn one answer; returns (event, seconds) worth announcing: 'opened'/'still down' with the
        seconds to the next probe, or 'closed' with how long the circuit was open."""
        state = self._open
        if state is not None:
            if ok:
                self._open = None
                self._recent.clear()
                return "closed", now - state.since
            if not state.probing:
                return None  # an answer to a request sent before the circuit opened
            state.probing = False
            state.interval = min(state.ceiling, state.interval * 2)
            state.next_probe = now + self._jittered(state.interval)
            return "still down", state.next_probe - now
        self._recent.append(ok)
        failures = self._recent.count(False)
        if len(self._recent) >= self._min_samples and failures >= self._trip_share * len(self._recent):
            return self.trip("outage", now, self._first_probe, self._max_probe)
        return None

    def trip(
        self, reason: str, now: float, interval: float, ceiling: float | None = None
    ) -> tuple[str, float] | None:
        """Open (or keep open) with `reason`; probe in about `interval` seconds, doubling the interval
        after each failed probe up to `ceiling` (default: keep it)."""
        if self._open is not None:
            return None
        self._open = _Open(reason, now, interval, ceiling or interval, now + self._jittered(interval))
        return "opened", self._open.next_probe - now

    def abandon_probe(self) -> None:
        """The probe was never sent (its caller gave up): let another request probe."""
        if self._open is not None:
            self._open.probing = False

    def _jittered(self, seconds: float) -> float:
        return seconds * self._rng.uniform(0.8, 1.2)
