"""Settings of the ESI client and governor, validated once at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time
from urllib.parse import urlsplit

# The first compatibility date with the current /corporations/{corporation_id} shape (tax_rates, state).
MIN_COMPATIBILITY_DATE = date(2026, 7, 21)
# ESI's documented error budget per window; a reserve at or above it would hold forever.
ESI_ERROR_BUDGET = 100
# Errors per window the fleet leaves untouched when no reserve is set.
DEFAULT_ERROR_RESERVE = 10
# Seconds one job keeps its thread busy once its send slot comes: ESI's round trip from far away
# (~200 ms outside Europe) plus the database reads and writes around it. By Little's law, holding a
# budget of R requests a second takes R x this many requests in flight.
JOB_SECONDS = 0.4
# Bounds of the derived concurrency: below 20 a short stall of a few threads shows in the rate;
# above 50 (a budget over 125 req/s) threads and database connections cost more than they bring
# on a small machine, and an operator who grants that much sets KILLREPORT_ESI_CONCURRENCY.
MIN_CONCURRENCY, MAX_CONCURRENCY = 20, 50


def concurrency_for(max_requests_per_second: float) -> int:
    """Requests a process keeps in flight unless told: enough for it alone to hold the fleet's
    budget when each job takes `JOB_SECONDS` (20 at 50 req/s, 40 at 100), within 20 to 50."""
    return min(MAX_CONCURRENCY, max(MIN_CONCURRENCY, math.ceil(max_requests_per_second * JOB_SECONDS)))


@dataclass(frozen=True, kw_only=True)
class EsiConfig:
    """How to reach ESI and how hard to push it.

    `downtime_start`/`downtime_end` are naive UTC times of the daily downtime; equal values turn
    the downtime handling off. `error_limit_margin` is the part of ESI's error budget the whole
    fleet on one IP leaves untouched (0: the default, 10); the governor keeps every process's
    requests on the wire within its share of the rest, so it needs no adjusting for concurrency
    or for the number of workers.
    """

    base_url: str = "https://esi.evetech.net"
    contact: str
    compatibility_date: date = MIN_COMPATIBILITY_DATE
    max_requests_per_second: float = 50.0
    max_concurrency: int = 20
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    error_limit_margin: int = 0
    downtime_start: time = time(11, 0)
    downtime_end: time = time(11, 15)

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            raise ValueError(f"base_url must be an http(s) URL without query, got {self.base_url!r}")
        if (
            not isinstance(self.contact, str)
            or not self.contact.strip()
            or any(ord(c) < 32 or ord(c) == 127 for c in self.contact)
        ):
            raise ValueError("contact must be a non-empty single line (it goes into the User-Agent)")
        if isinstance(self.compatibility_date, datetime) or not isinstance(self.compatibility_date, date):
            raise ValueError("compatibility_date must be a date")
        if self.compatibility_date < MIN_COMPATIBILITY_DATE:
            raise ValueError(f"compatibility_date must be on or after {MIN_COMPATIBILITY_DATE.isoformat()}")
        for name in ("max_requests_per_second", "connect_timeout", "read_timeout"):
            _require(name, _finite(getattr(self, name)) and getattr(self, name) > 0, "a positive number")
        _require("backoff_base", _finite(self.backoff_base) and self.backoff_base >= 0, "≥ 0")
        _require(
            "backoff_cap",
            _finite(self.backoff_cap) and self.backoff_cap >= self.backoff_base,
            "≥ backoff_base",
        )
        for name in ("max_concurrency", "max_attempts"):
            _require(name, _int(getattr(self, name)) and getattr(self, name) >= 1, "an integer ≥ 1")
        _require(
            "error_limit_margin",
            _int(self.error_limit_margin) and self.error_limit_margin >= 0,
            "an integer ≥ 0",
        )
        if self.error_margin >= ESI_ERROR_BUDGET:
            raise ValueError(f"error_limit_margin must be below {ESI_ERROR_BUDGET}, ESI's whole error budget")
        for name in ("downtime_start", "downtime_end"):
            value = getattr(self, name)
            _require(name, isinstance(value, time) and value.tzinfo is None, "a naive time (UTC)")

    @property
    def error_margin(self) -> int:
        """Errors per window kept in reserve: the fleet's requests stop short of using them."""
        return self.error_limit_margin or DEFAULT_ERROR_RESERVE


def _require(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
