"""Freshness from response headers, and cache entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from killreport_assets.esi import CacheEntry, MemoryCache
from killreport_assets.esi.freshness import expires_at

NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"Cache-Control": "public, max-age=3600"}, 3600),
        ({"Cache-Control": "public, max-age=3600", "Age": "600"}, 3000),
        # max-age wins over Expires
        (
            {
                "Cache-Control": "max-age=60",
                "Date": "Wed, 15 Nov 2017 11:00:00 GMT",
                "Expires": "Wed, 15 Nov 2017 12:00:00 GMT",
            },
            60,
        ),
        # Expires − Date, both server times, however wrong the server clock is
        ({"Date": "Wed, 15 Nov 2017 11:00:00 GMT", "Expires": "Wed, 15 Nov 2017 11:05:00 GMT"}, 300),
        (
            {
                "Cache-Control": "public",
                "Date": "Wed, 15 Nov 2017 11:05:00 GMT",
                "Expires": "Wed, 15 Nov 2017 11:05:00 GMT",
            },
            0,
        ),
        ({"Date": "Wed, 15 Nov 2017 11:06:00 GMT", "Expires": "Wed, 15 Nov 2017 11:05:00 GMT"}, 0),
        ({"Expires": "Wed, 15 Nov 2017 11:05:00 GMT"}, 0),  # no Date: cannot tell
        ({"Date": "Wed, 15 Nov 2017 11:00:00 GMT", "Expires": "0"}, 0),
        ({"Cache-Control": "no-cache, max-age=60"}, 0),
        ({"Cache-Control": "max-age=60", "Age": "90"}, 0),
        ({}, 0),
    ],
)
def test_lifetime_from_headers(headers: dict[str, str], lifetime: int) -> None:
    assert expires_at(httpx.Headers(headers), NOW) == NOW + timedelta(seconds=lifetime)


def test_cache_entry_takes_naive_expiry_as_utc() -> None:
    entry = CacheEntry(etag=None, last_modified=None, expires_at=datetime(2026, 8, 1, 12, 0), body=b"[]")
    assert entry.expires_at == NOW


def test_memory_cache_round_trip() -> None:
    cache = MemoryCache()
    entry = CacheEntry(etag='"a"', last_modified=None, expires_at=NOW, body=b"[]")
    assert cache.get("https://esi.evetech.net/alliances") is None
    cache.put("https://esi.evetech.net/alliances", entry)
    assert cache.get("https://esi.evetech.net/alliances") == entry
