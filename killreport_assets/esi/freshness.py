"""How long an ESI response stays fresh, from its headers.

ESI's `Expires` is an absolute time shared by all clients, and the local clock may be off from
ESI's, so an absolute server time is never compared with the local clock: the lifetime is
`max-age − Age`, or else `Expires − Date` (both server times), and is added to the local now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx


def expires_at(headers: httpx.Headers, now: datetime) -> datetime:
    """When a response received at local time `now` stops being fresh (`<= now`: already stale)."""
    lifetime = _lifetime(headers)
    return now + timedelta(seconds=lifetime) if lifetime > 0 else now


def _lifetime(headers: httpx.Headers) -> float:
    directives = _cache_control(headers.get("cache-control", ""))
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    max_age = _seconds(directives.get("max-age"))
    if max_age is not None:
        return max_age - (_seconds(headers.get("age")) or 0)
    expires, date = _http_date(headers.get("expires")), _http_date(headers.get("date"))
    if expires is None or date is None:
        return 0.0
    return (expires - date).total_seconds()


def _cache_control(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            directives[name.lower()] = arg.strip().strip('"') or None
    return directives


def _seconds(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
