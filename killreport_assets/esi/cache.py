"""Storage for ESI responses, keyed by the full URL without query string.

The cache may be shared by several processes (e.g. a database), so an entry is always written
whole: a body is only ever stored together with the ETag/Last-Modified it came with, and a
concurrent writer can at worst replace one consistent entry with another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CacheEntry:
    """A stored response body with its validators and when it stops being fresh.

    `expires_at` is UTC; a naive value is taken as UTC (some databases drop the zone).
    """

    etag: str | None
    last_modified: str | None
    expires_at: datetime
    body: bytes

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            object.__setattr__(self, "expires_at", self.expires_at.replace(tzinfo=UTC))


class HttpCache(Protocol):
    def get(self, url: str) -> CacheEntry | None: ...


@runtime_checkable
class WritableCache(HttpCache, Protocol):
    """A cache the client writes itself (in-process ones); others are written with the data."""

    def put(self, url: str, entry: CacheEntry) -> None: ...


class MemoryCache:
    """A thread-safe in-process `HttpCache`; unbounded, so meant for one run or for tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, CacheEntry] = {}

    def get(self, url: str) -> CacheEntry | None:
        with self._lock:
            return self._entries.get(url)

    def put(self, url: str, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[url] = entry
