"""Everything a running simulator remembers: the served day, cached bodies, limits, faults and stats.

The state belongs to the server's event loop: the ASGI app and the `/_sim/*` endpoints use it from
there, and `SimulatorServer` hops onto that loop for in-process admin calls, so no locks are needed.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from killreport_assets.simulator import shapes
from killreport_assets.simulator.config import SimulatorConfig
from killreport_assets.simulator.limits import ErrorLimiter, TokenBuckets
from killreport_assets.simulator.universe import Universe

# Resource kinds (route families) and the key that identifies one served resource.
ALLIANCES, ALLIANCE, MEMBERS, CORPORATION, HISTORY, NAMES = (
    "alliances", "alliance", "members", "corporation", "history", "names",
)  # fmt: skip
WEAK_ETAG_KINDS = frozenset({MEMBERS, HISTORY})  # ESI sends strong and weak ETags; clients must echo both
ResourceKey = tuple[str, int, str]  # (kind, entity id or 0, shape)


@dataclass(frozen=True, slots=True)
class Body:
    content: bytes
    etag: str  # with quotes, and W/ for weak ones

    @property
    def opaque(self) -> str:
        return self.etag.removeprefix("W/")


class Stats:
    """Counters served by `GET /_sim/stats`; `/_sim/*` requests never reach them."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_route: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.conditional = 0
        self.not_modified = 0
        self.early = 0
        self.early_by_route: Counter[str] = Counter()
        self.errors = 0
        self.error_limited = 0
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.by_second: Counter[int] = Counter()  # requests by the epoch second they arrived in
        self.errors_by_window: Counter[int] = Counter()  # errors counted by the error limit, by window
        self.lowest_error_remain: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_route": {route: dict(sorted(c.items())) for route, c in sorted(self.by_route.items())},
            "conditional_requests": self.conditional,
            "not_modified": self.not_modified,
            "early_requests": self.early,
            "early_by_route": dict(sorted(self.early_by_route.items())),
            "errors": self.errors,
            "error_limited": self.error_limited,
            "rate_limited": self.rate_limited,
            "faults_injected": sum(self.faults.values()),
            "faults": dict(sorted(self.faults.items())),
            "peak_requests_in_10s": peak_in_window(self.by_second, 10),
            "requests_by_second": {str(second): n for second, n in sorted(self.by_second.items())},
            "max_errors_in_a_window": max(self.errors_by_window.values(), default=0),
            "lowest_error_remain": self.lowest_error_remain,
        }


def peak_in_window(by_second: Counter[int], seconds: int) -> int:
    """The most requests that arrived in any `seconds` consecutive whole seconds."""
    if not by_second:
        return 0
    first, last = min(by_second), max(by_second)
    counts = [by_second.get(second, 0) for second in range(first, last + 1)]
    window = sum(counts[:seconds])
    peak = window
    for index in range(seconds, len(counts)):
        window += counts[index] - counts[index - seconds]
        peak = max(peak, window)
    return peak


class SimulatorState:
    def __init__(
        self,
        config: SimulatorConfig,
        universe: Universe | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        if universe is None:
            universe = Universe.generate(config.seed, config.alliances, config.corporations).on_day(
                config.day
            )
        self._days: dict[int, Universe] = {universe.day: universe}
        self.universe = universe
        self._bodies: dict[ResourceKey, Body] = {}
        self._universe_json: bytes | None = None
        self._last_modified: dict[ResourceKey, tuple[str, int]] = {}
        self._expires: dict[ResourceKey, float] = {}
        self.stats = Stats()
        self.error_limiter = ErrorLimiter()
        self.buckets = TokenBuckets()
        self.fault_rng = random.Random(f"killreport-sim:{config.seed}:faults")
        self.latency_rng = random.Random(f"killreport-sim:{config.seed}:latency")
        self.downtime_until = 0.0

    # --- served universe ----------------------------------------------------------------------------

    def set_day(self, day: int) -> Universe:
        """Serve `day`; earlier days are recomputed from the earliest one kept. Unchanged bodies keep their ETag."""
        if day not in self._days:
            known = [d for d in self._days if d <= day]
            if not known:
                raise ValueError(f"day {day} is before the first known day {min(self._days)}")
            self._days[day] = self._days[max(known)].on_day(day)
        if self._days[day] is not self.universe:
            self.universe = self._days[day]
            self._bodies.clear()
            self._universe_json = None
        return self.universe

    def body(self, kind: str, entity_id: int, shape: str) -> Body | None:
        """The 200 body of a resource for the served day (None: 404), built once per day."""
        key = (kind, entity_id, shape)
        body = self._bodies.get(key)
        if body is None:
            body = self._build(kind, entity_id, shape)
            if body is not None:  # unknown IDs are cheap to look up and must not grow the cache
                self._bodies[key] = body
        return body

    def _build(self, kind: str, entity_id: int, shape: str) -> Body | None:
        universe = self.universe
        value: Any
        if kind == ALLIANCES:
            value = list(universe.listed_alliance_ids())
        elif kind in (ALLIANCE, MEMBERS):
            alliance = universe.alliance(entity_id)
            if alliance is None:
                return None
            value = (
                shapes.alliance_detail(alliance) if kind == ALLIANCE else list(universe.members(entity_id))
            )
        else:
            corp = universe.corporation(entity_id)
            if corp is None:
                return None
            if kind == HISTORY:
                value = shapes.alliance_history(universe, entity_id)
            elif shape == shapes.NEW:
                value = shapes.corporation_new(corp)
            else:
                value = shapes.corporation_legacy(corp)
        content = shapes.dumps(value)
        etag = f'"{hashlib.sha224(content).hexdigest()}"'
        return Body(content, f"W/{etag}" if kind in WEAK_ETAG_KINDS else etag)

    def universe_json(self) -> bytes:
        if self._universe_json is None:
            self._universe_json = shapes.dumps(self.universe.to_json())
        return self._universe_json

    # --- caching metadata ---------------------------------------------------------------------------

    def last_modified(self, key: ResourceKey, body: Body, now: float) -> int:
        """When this content was first served; strictly later than the previous content's, so IMS works."""
        known = self._last_modified.get(key)
        if known is not None and known[0] == body.etag:
            return known[1]
        stamp = int(now) if known is None else max(int(now), known[1] + 1)
        self._last_modified[key] = (body.etag, stamp)
        return stamp

    def announce(self, key: ResourceKey, now: float) -> int:
        """Expires for a 200/304 sent now (whole seconds, at least now + TTL); remembered for early_requests."""
        expires = math.ceil(now) + self.config.cache_ttl
        self._expires[key] = expires
        return expires

    def is_early(self, key: ResourceKey, now: float) -> bool:
        return now < self._expires.get(key, 0.0)

    # --- faults -------------------------------------------------------------------------------------

    def in_downtime(self, now: float) -> bool:
        if now < self.downtime_until:
            return True
        window = self.config.downtime
        if window is None:
            return False
        moment = datetime.fromtimestamp(now, UTC).time()
        start, end = window
        return start <= moment < end if start < end else (moment >= start or moment < end)

    def latency(self) -> float:
        """Seconds to wait before answering: mean ± jitter, never negative."""
        config = self.config
        if not config.latency_ms and not config.jitter_ms:
            return 0.0
        jitter = self.latency_rng.uniform(-config.jitter_ms, config.jitter_ms)
        return max(0.0, config.latency_ms + jitter) / 1000

    def roll_fault(self) -> str | None:
        """None, or which transient fault to answer: "502", "503", "504" or "504-html"."""
        config = self.config
        if not config.fault_rate or self.fault_rng.random() >= config.fault_rate:
            return None
        if self.fault_rng.random() < config.html_fault_share:
            return "504-html"
        roll = self.fault_rng.random()
        return "502" if roll < 0.35 else "503" if roll < 0.6 else "504"

    # --- admin --------------------------------------------------------------------------------------

    def update_config(self, changes: dict[str, Any]) -> SimulatorConfig:
        self.config = self.config.with_runtime_changes(changes)
        return self.config

    def force_downtime(self, seconds: float) -> float:
        """Answer 503 everywhere for the next `seconds` (0 ends a forced downtime)."""
        self.downtime_until = self.clock() + seconds if seconds > 0 else 0.0
        return self.downtime_until

    def exhaust_error_limit(self, ip: str) -> int:
        """Spend the caller's remaining error budget; returns seconds until the window resets."""
        now, config = self.clock(), self.config
        self.error_limiter.exhaust(ip, now, config.error_window, config.error_limit)
        return self.error_limiter.reset_in(now, config.error_window)

    def exhaust_buckets(self, ip: str, groups: tuple[str, ...]) -> None:
        now, config = self.clock(), self.config
        for group in groups:
            self.buckets.exhaust(group, ip, now, config.bucket_window, config.bucket_tokens)

    def reset_limits(self) -> None:
        self.error_limiter.clear()
        self.buckets.clear()

    def reset_stats(self) -> None:
        """Zero the counters; remembered Expires stay, so early requests after a reset still count."""
        self.stats = Stats()
