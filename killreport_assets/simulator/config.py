"""All knobs of the ESI simulator in one frozen value, so a test can state exactly what it runs against.

The same value is built from CLI flags, sent as JSON to `POST /_sim/config`, and turned back into
CLI flags for a subprocess, so each of those paths goes through `SimulatorConfig` and its checks.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import time
from typing import Any, Literal

RateLimitMode = Literal["error-limit", "bucket"]
RATE_LIMIT_MODES: tuple[str, ...] = ("error-limit", "bucket")

# Options that `POST /_sim/config` may change on a running simulator; the rest shape the universe.
RUNTIME_FIELDS = frozenset(
    {
        "cache_ttl",
        "latency_ms",
        "jitter_ms",
        "fault_rate",
        "html_fault_share",
        "poison_corporations",
        "poison_alliances",
        "downtime",
        "error_window",
        "error_limit",
        "rate_limit_mode",
        "bucket_tokens",
        "bucket_window",
    }
)

_DOWNTIME = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_downtime(text: str) -> tuple[time, time]:
    """Parse `HH:MM-HH:MM` (UTC); the window may wrap past midnight."""
    match = _DOWNTIME.match(text.strip())
    if not match:
        raise ValueError(f"downtime must look like HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"downtime {text!r}: {exc}") from None
    if start == end:
        raise ValueError(f"downtime {text!r} is empty")
    return start, end


def format_downtime(window: tuple[time, time] | None) -> str | None:
    if window is None:
        return None
    return f"{window[0]:%H:%M}-{window[1]:%H:%M}"


def format_window(seconds: int) -> str:
    """`X-Ratelimit-Limit` window suffix: `15m`, `1h`, or `10s` when not a whole number of minutes."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class SimulatorConfig:
    """Simulator options; defaults match Tranquility as described in `esi.md` (no faults, no latency)."""

    seed: int = 1
    alliances: int = 3616
    corporations: int = 18000  # member corporations of listed alliances; a few hundred more are unaffiliated
    day: int = 0
    cache_ttl: int = 3600  # seconds between a 200 and its `Expires`
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    fault_rate: float = 0.0  # fraction of ESI requests answered with a transient 502/503/504
    html_fault_share: float = 0.1  # of those faults, the fraction that is a load balancer's HTML 504
    poison_corporations: frozenset[int] = frozenset()
    poison_alliances: frozenset[int] = frozenset()
    downtime: tuple[time, time] | None = None  # daily UTC window answering 503 on every route
    error_window: int = 60
    error_limit: int = 100
    rate_limit_mode: RateLimitMode = "error-limit"
    bucket_tokens: int = 150
    bucket_window: int = 900

    def __post_init__(self) -> None:
        # Normalise JSON/CLI inputs (lists, strings) so equality and hashing behave.
        object.__setattr__(self, "poison_corporations", frozenset(int(i) for i in self.poison_corporations))
        object.__setattr__(self, "poison_alliances", frozenset(int(i) for i in self.poison_alliances))
        if isinstance(self.downtime, str):
            object.__setattr__(self, "downtime", parse_downtime(self.downtime))
        elif self.downtime is not None:
            object.__setattr__(self, "downtime", tuple(self.downtime))
        self._check()

    def _check(self) -> None:
        def need(ok: bool, field: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{field} {rule}, got {getattr(self, field)!r}")

        need(self.alliances >= 1, "alliances", "must be at least 1")
        need(self.corporations >= self.alliances, "corporations", "must be at least the number of alliances")
        need(self.day >= 0, "day", "must be >= 0")
        need(self.cache_ttl >= 1, "cache_ttl", "must be at least 1 second")
        need(self.latency_ms >= 0, "latency_ms", "must be >= 0")
        need(self.jitter_ms >= 0, "jitter_ms", "must be >= 0")
        need(0.0 <= self.fault_rate <= 1.0, "fault_rate", "must be between 0 and 1")
        need(0.0 <= self.html_fault_share <= 1.0, "html_fault_share", "must be between 0 and 1")
        need(self.error_window >= 1, "error_window", "must be at least 1 second")
        need(self.error_limit >= 1, "error_limit", "must be at least 1")
        need(
            self.rate_limit_mode in RATE_LIMIT_MODES, "rate_limit_mode", f"must be one of {RATE_LIMIT_MODES}"
        )
        need(self.bucket_tokens >= 1, "bucket_tokens", "must be at least 1")
        need(self.bucket_window >= 1, "bucket_window", "must be at least 1 second")

    def replace(self, **changes: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **changes)

    def with_runtime_changes(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply a `POST /_sim/config` body; unknown or universe-shaping keys are refused."""
        refused = sorted(set(changes) - RUNTIME_FIELDS)
        if refused:
            raise ValueError(
                f"cannot change {', '.join(refused)} at runtime; allowed: {sorted(RUNTIME_FIELDS)}"
            )
        return self.replace(**changes)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["poison_corporations"] = sorted(self.poison_corporations)
        data["poison_alliances"] = sorted(self.poison_alliances)
        data["downtime"] = format_downtime(self.downtime)
        return data

    def to_argv(self) -> list[str]:
        """The `python -m killreport_assets.simulator` flags that reproduce this config."""
        argv: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                continue
            flag = "--" + field.name.replace("_", "-")
            if field.name in ("poison_corporations", "poison_alliances"):
                flag = flag.removesuffix("s")  # --poison-corporation ID, repeatable
                for entity_id in sorted(value):
                    argv += [flag, str(entity_id)]
            elif field.name == "downtime":
                argv += [flag, str(format_downtime(value))]
            else:
                argv += [flag, str(value)]
        return argv

    @property
    def bucket_limit_header(self) -> str:
        return f"{self.bucket_tokens}/{format_window(self.bucket_window)}"
