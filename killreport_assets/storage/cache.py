"""The ESI HTTP cache in the application database, shared by every process and every run.

The ESI client reads it (`get`); only the unit of work writes it (`write`), in the transaction that
writes the data the response carried, so an entry never claims "unchanged since" data that was not
committed, and a response is kept as soon as its own data is, whatever later jobs do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from killreport_assets.esi.cache import CacheEntry
from killreport_assets.storage import tables
from killreport_assets.storage.sql import upsert

_cache = tables.esi_cache


class EsiCache:
    """`esi.HttpCache` over the `esi_cache` table."""

    def __init__(self, engine: sa.Engine, statements: sa.Engine | None = None) -> None:
        """`statements`: the autocommit pool for single-statement reads (default: `engine`)."""
        self._engine = engine
        self._reads = statements or engine

    def get(self, url: str) -> CacheEntry | None:
        with self._reads.connect() as conn:
            row = conn.execute(sa.select(_cache).where(_cache.c.url == url)).first()
        if row is None:
            return None
        return CacheEntry(
            etag=row.etag, last_modified=row.last_modified, expires_at=row.expires_at, body=row.body
        )

    def write(
        self, conn: sa.Connection, responses: Sequence[tuple[str, CacheEntry]], now: dt.datetime
    ) -> None:
        """Store responses inside the caller's transaction (the last one per URL wins)."""
        latest = dict(responses)
        rows = [
            {
                "url": url,
                "etag": entry.etag,
                "last_modified": entry.last_modified,
                "expires_at": entry.expires_at,
                "body": entry.body,
                "updated_at": now,
            }
            for url, entry in sorted(latest.items())
        ]
        upsert(conn, _cache, rows, keys=["url"])

    def expire_all(self, at: dt.datetime) -> int:
        """Mark every entry stale as of `at` (validators kept): what a night does to the cache."""
        with self._engine.begin() as conn:
            return conn.execute(_cache.update().values(expires_at=at)).rowcount
