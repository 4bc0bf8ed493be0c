"""The bookkeeping behind the governor: request pacing, ESI's error budget, rate-limit groups.

Not thread-safe on purpose: the governor calls these under its own lock. Times are monotonic
seconds.
"""

from __future__ import annotations

# A slowed-down rate never drops below this share of the cap: the hold, not a crawl, is what
# finally stops errors.
_MIN_FACTOR = 0.05
# Start slowing down once less than this share of a budget is left.
_SLOW_BELOW = 0.5
# How much of a second's worth of requests may go back to back.
_BURST_SECONDS = 0.1
# Reset is in whole seconds and responses arrive with latency, so window ends computed from
# different responses of one window differ by up to about this much.
_WINDOW_TOLERANCE = 2.0


class Pacer:
    """GCRA pacing: books send slots `1/rate` apart, allowing a burst of about `_BURST_SECONDS`.

    Each caller books its own slot and sleeps until it, so waiting threads are served in order
    without polling.
    """

    def __init__(self) -> None:
        self._next = float("-inf")  # the theoretical arrival time of the next request

    def reserve(self, now: float, rate: float) -> float:
        """Book the next slot at `rate` requests per second; return how long to wait for it."""
        interval = 1.0 / rate
        burst = max(1.0, rate * _BURST_SECONDS)
        slot = max(self._next, now)
        self._next = slot + interval
        return max(0.0, slot - (burst - 1.0) * interval - now)


class ErrorBudget:
    """ESI's error-limit window as the X-ESI-Error-Limit-Remain/-Reset headers report it.

    Within a window `remain` only falls, so the lowest value seen wins (responses of one window
    arrive out of order); a response whose window ends clearly later starts a new window, and one
    whose window ended clearly earlier is a straggler and is ignored. `pad` is added to every
    window end so rounding of Reset never releases a hold too early.
    """

    def __init__(self, pad: float) -> None:
        self._pad = pad
        self._remain: int | None = None
        self._window_end = float("-inf")
        self._full = 0  # the largest remain ever seen: what a fresh window holds

    def observe(self, remain: int, reset: int, now: float) -> None:
        end = now + reset + self._pad
        if self._remain is None or now >= self._window_end or end > self._window_end + _WINDOW_TOLERANCE:
            self._remain, self._window_end = remain, end
        elif end >= self._window_end - _WINDOW_TOLERANCE:
            self._remain = min(self._remain, remain)
        self._full = max(self._full, remain)

    def exhaust(self, until: float) -> None:
        """A 420: nothing is left until `until`."""
        self._remain = 0
        self._window_end = max(self._window_end, until)

    def remain(self, now: float) -> int | None:
        """Errors left in the current window, or None when no window is known."""
        return self._remain if self._remain is not None and now < self._window_end else None

    def hold_until(self, now: float, margin: int) -> float | None:
        """When requests may go again, if the budget is down to `margin`."""
        remain = self.remain(now)
        return self._window_end if remain is not None and remain <= margin else None

    def rate_factor(self, now: float) -> float:
        """Share of the full rate to use: below half of the budget, in proportion to what is left."""
        return _factor(self.remain(now), self._full)


class RateLimitGroup:
    """One X-Ratelimit-Group token bucket: how full it is and whether a 429 paused it."""

    def __init__(self) -> None:
        self.pacer = Pacer()
        self.paused_until = float("-inf")
        self._limit: int | None = None
        self._remaining: int | None = None

    def observe(self, limit: str | None, remaining: str | None) -> None:
        tokens = parse_int((limit or "").partition("/")[0])  # e.g. "150/15m"
        if tokens:
            self._limit = tokens
        left = parse_int(remaining)
        if left is not None:
            self._remaining = left

    def rate_factor(self) -> float:
        return _factor(self._remaining, self._limit or 0)


def parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def _factor(left: int | None, full: int) -> float:
    threshold = full * _SLOW_BELOW
    if left is None or left >= threshold:
        return 1.0
    return max(_MIN_FACTOR, left / threshold)
