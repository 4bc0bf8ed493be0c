"""Process-wide pacing of ESI traffic, shared by every thread and every client of a process.

ESI limits by source IP: after 100 error responses in a (fixed) window it answers 420 to
everything until the window resets, and routes in a rate-limit group answer 429 when their token
bucket is empty. The governor keeps the process from getting there:

* pacing: requests are spaced at `max_requests_per_second` with a small burst, and at most
  `max_concurrency` are in flight;
* error budget: X-ESI-Error-Limit-Remain/-Reset of every response are tracked. Below half of
  the budget the rate is scaled down in proportion to what is left; at or below the margin
  (≥ `max_concurrency`) new requests are held until the window resets. Because no more than
  `max_concurrency` requests can be in flight when the hold starts, even if all of them fail
  the budget cannot reach 0 — so many transient errors never turn into a 420;
* a 420 anyway (e.g. another process on the same IP) stops every request until the reset;
* a 429 pauses its rate-limit group (everything, without a group header) for Retry-After;
* a 502/503 during the daily downtime pauses everything until the downtime ends.

Pauses are logged at INFO (reason and seconds) and reported to the optional `on_pause` hook.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

import httpx

from .clock import Clock, SystemClock
from .config import EsiConfig
from .limits import ErrorBudget, Pacer, RateLimitGroup, parse_int

logger = logging.getLogger("killreport_assets.esi")

# Seconds to pause on a 420/429 that carries no Reset/Retry-After (what EVE Ref and eve-esi-proxy use).
_DEFAULT_PAUSE = 10.0

PauseHook = Callable[[str, float], None]


class Wait(StrEnum):
    """Why a request waited; the keys of the `waits` statistics."""

    RATE = "rate"
    CONCURRENCY = "concurrency"
    ERROR_LIMIT_HOLD = "error_limit_hold"
    ERROR_LIMITED = "error_limited"
    RATE_LIMITED = "rate_limited"
    DOWNTIME = "downtime"
    BACKOFF = "backoff"


@dataclass
class Permit:
    """Seconds one request spent waiting before it was let through, by reason."""

    waits: dict[str, float] = field(default_factory=dict)


class EsiGovernor:
    """Admission control for ESI requests; see the module docstring. Thread-safe.

    `reset_margin` is added to every Reset/Retry-After (the safety second); `downtime_jitter`
    spreads the restart after downtime so many processes do not return at the same instant.
    """

    def __init__(
        self,
        config: EsiConfig,
        *,
        clock: Clock | None = None,
        on_pause: PauseHook | None = None,
        reset_margin: float = 1.0,
        downtime_jitter: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._on_pause = on_pause
        self._reset_margin = reset_margin
        self._downtime_jitter = downtime_jitter
        self._rng = rng or random.Random()
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._lock = threading.Lock()
        self._pacer = Pacer()
        self._budget = ErrorBudget(pad=reset_margin)
        self._groups: dict[str, RateLimitGroup] = {}
        self._route_groups: dict[str, str] = {}
        self._paused_until = float("-inf")
        self._pause_reason = Wait.ERROR_LIMITED
        self._announced_hold = float("-inf")
        self._waits: defaultdict[str, float] = defaultdict(float)
        self._count_420 = 0
        self._count_429 = 0

    @classmethod
    def shared(cls, config: EsiConfig) -> EsiGovernor:
        """The process-wide governor for `config.base_url`. The first config seen sets its limits,
        because one process can only honour one cap towards one ESI."""
        key = config.base_url.rstrip("/")
        with _shared_lock:
            governor = _shared.get(key)
            if governor is None:
                governor = _shared[key] = cls(config)
            elif _limits(governor.config) != _limits(config):
                logger.warning("the shared ESI governor for %s keeps the limits it was created with", key)
        return governor

    @contextmanager
    def permit(self, route: str) -> Iterator[Permit]:
        """Wait until a request on `route` may be sent; hold a concurrency slot while it runs."""
        permit = Permit()
        started = self.clock.monotonic()
        with self._slots:
            self._record(permit, Wait.CONCURRENCY, self.clock.monotonic() - started)
            self._pace(route, permit)
            yield permit

    def observe(self, route: str, response: httpx.Response) -> None:
        """Learn from a response's limit headers; start a pause on 420/429."""
        headers = response.headers
        remain = parse_int(headers.get("x-esi-error-limit-remain"))
        reset = parse_int(headers.get("x-esi-error-limit-reset"))
        group_name = headers.get("x-ratelimit-group")
        now = self.clock.monotonic()
        announce: tuple[Wait, float, str] | None = None
        with self._lock:
            if remain is not None and reset is not None:
                self._budget.observe(remain, reset, now)
            group = None
            if group_name:
                self._route_groups[route] = group_name
                group = self._groups.setdefault(group_name, RateLimitGroup())
                group.observe(headers.get("x-ratelimit-limit"), headers.get("x-ratelimit-remaining"))
            if response.status_code == 420:
                self._count_420 += 1
                seconds = (_DEFAULT_PAUSE if reset is None else reset) + self._reset_margin
                self._budget.exhaust(now + seconds)
                announce = self._pause_all(Wait.ERROR_LIMITED, now, seconds)
            elif response.status_code == 429:
                self._count_429 += 1
                retry_after = parse_int(headers.get("retry-after"))
                seconds = (_DEFAULT_PAUSE if retry_after is None else retry_after) + self._reset_margin
                if group is None:
                    announce = self._pause_all(Wait.RATE_LIMITED, now, seconds)
                else:
                    if _is_news(group.paused_until, now, seconds):
                        announce = (
                            Wait.RATE_LIMITED,
                            seconds,
                            f"requests in rate-limit group {group_name!r}",
                        )
                    group.paused_until = max(group.paused_until, now + seconds)
        if announce:
            self._announce(*announce)

    def downtime_pause(self) -> bool:
        """Call on a 502/503. Inside the daily downtime, pause every request until it ends (plus
        jitter) and return True: the failure is expected and should not spend an attempt."""
        left = _downtime_left(self.clock.now(), self.config.downtime_start, self.config.downtime_end)
        if left is None:
            return False
        seconds = left + self._rng.uniform(0.0, self._downtime_jitter)
        with self._lock:
            announce = self._pause_all(Wait.DOWNTIME, self.clock.monotonic(), seconds)
        if announce:
            self._announce(*announce)
        return True

    def stats(self) -> dict[str, object]:
        """Totals for this governor (for the shared one: the whole process)."""
        with self._lock:
            return {
                "waits": dict(self._waits),
                "error_limited_420": self._count_420,
                "rate_limited_429": self._count_429,
                "error_limit_remain": self._budget.remain(self.clock.monotonic()),
            }

    def _pace(self, route: str, permit: Permit) -> None:
        reserved = False
        while True:
            now = self.clock.monotonic()
            with self._lock:
                blocked, until, new_hold = self._blocked(route, now)
                if blocked is None:
                    if reserved:
                        return
                    delay = self._reserve(route, now)
                    if delay <= 0:
                        return
                    reason, until, reserved = Wait.RATE, now + delay, True
                else:
                    # book a fresh slot afterwards, so the end of a pause is paced rather than a burst
                    reason, reserved = blocked, False
            if new_hold:
                self._announce(reason, until - now, "new requests until the error-limit window resets")
            self._record(permit, reason, until - now, sleep=True)

    def _blocked(self, route: str, now: float) -> tuple[Wait | None, float, bool]:
        """The latest pause or hold that applies to `route`, and whether it is a hold not yet logged.
        A hold that ends with a pause is reported as the pause, which is what caused it."""
        blocks: list[tuple[float, Wait]] = []
        if self._paused_until > now:
            blocks.append((self._paused_until, self._pause_reason))
        group = self._group(route)
        if group is not None and group.paused_until > now:
            blocks.append((group.paused_until, Wait.RATE_LIMITED))
        hold = self._budget.hold_until(now, self.config.error_margin)
        if hold is not None:
            blocks.append((hold, Wait.ERROR_LIMIT_HOLD))
        if not blocks:
            return None, now, False
        until, reason = max(blocks, key=lambda block: block[0])  # on a tie the earlier entry wins
        new_hold = reason is Wait.ERROR_LIMIT_HOLD and until != self._announced_hold
        if new_hold:
            self._announced_hold = until
        return reason, until, new_hold

    def _reserve(self, route: str, now: float) -> float:
        rate = self.config.max_requests_per_second
        delay = self._pacer.reserve(now, rate * self._budget.rate_factor(now))
        group = self._group(route)
        if group is not None and (factor := group.rate_factor()) < 1.0:
            delay = max(delay, group.pacer.reserve(now, rate * factor))
        return delay

    def _group(self, route: str) -> RateLimitGroup | None:
        name = self._route_groups.get(route)
        return None if name is None else self._groups.get(name)

    def _pause_all(self, reason: Wait, now: float, seconds: float) -> tuple[Wait, float, str] | None:
        """Extend the process-wide pause; return what to announce if it is news."""
        news = _is_news(self._paused_until, now, seconds)
        if now + seconds > self._paused_until:
            self._paused_until = now + seconds
            self._pause_reason = reason
        return (reason, seconds, "all requests") if news else None

    def _record(self, permit: Permit, reason: Wait, seconds: float, *, sleep: bool = False) -> None:
        if seconds <= 0:
            return
        if sleep:
            self.clock.sleep(seconds)
        key = str(reason)  # plain strings in statistics
        with self._lock:
            self._waits[key] += seconds
        permit.waits[key] = permit.waits.get(key, 0.0) + seconds

    def _announce(self, reason: Wait, seconds: float, scope: str) -> None:
        logger.info("ESI pause (%s, %.1f s): holding %s", reason, seconds, scope)
        if self._on_pause is not None:
            self._on_pause(str(reason), seconds)


_shared: dict[str, EsiGovernor] = {}
_shared_lock = threading.Lock()


def _is_news(paused_until: float, now: float, seconds: float) -> bool:
    """Whether a pause is worth announcing: nothing was paused, or it extends the pause noticeably
    (every request in flight during a 420 gets one, and one log line is enough)."""
    return paused_until <= now or now + seconds > paused_until + 1.0


def _limits(config: EsiConfig) -> tuple[object, ...]:
    return (
        config.max_requests_per_second,
        config.max_concurrency,
        config.error_margin,
        config.downtime_start,
        config.downtime_end,
    )


def _downtime_left(now: datetime, start: time, end: time) -> float | None:
    """Seconds until `end` if the UTC time of day of `now` is in [start, end); None otherwise."""
    if start == end:
        return None
    now = now.astimezone(UTC)
    of_day = now.time().replace(tzinfo=None)
    inside = start <= of_day < end if start < end else (of_day >= start or of_day < end)
    if not inside:
        return None
    until = datetime.combine(now.date(), end, tzinfo=UTC)
    if until <= now:
        until += timedelta(days=1)
    return (until - now).total_seconds()
