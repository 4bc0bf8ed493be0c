"""The ESI HTTP cache in the application database, shared by every process and every run.

Reads go to the database only for URLs not already in memory; writes are buffered and committed in
bulk by `flush`, which the job writer calls inside the same transaction as the data, so the cache
never adds row-at-a-time round trips to the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from killreport_assets.esi.cache import CacheEntry
from killreport_assets.storage import tables as t
from killreport_assets.storage.repository import _chunks, utcnow


class DatabaseCache:
    """`HttpCache` backed by the `esi_cache` table."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._loaded: dict[str, CacheEntry] = {}
        self._pending: dict[str, CacheEntry] = {}

    def get(self, url: str) -> CacheEntry | None:
        with self._lock:
            entry = self._pending.get(url) or self._loaded.get(url)
        if entry is not None:
            return entry
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(t.esi_cache).where(t.esi_cache.c.url == url)).first()
        return None if row is None else _entry(row)

    def preload(self, urls: Iterable[str]) -> int:
        """Read many entries in a few queries before the requests for them start."""
        found: dict[str, CacheEntry] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(sorted(set(urls)), 500):
                for row in conn.execute(sa.select(t.esi_cache).where(t.esi_cache.c.url.in_(chunk))):
                    found[row.url] = _entry(row)
        with self._lock:
            self._loaded.update(found)
        return len(found)

    def put(self, url: str, entry: CacheEntry) -> None:
        with self._lock:
            self._pending[url] = entry
            self._loaded.pop(url, None)

    def flush(self, conn: sa.Connection | None = None) -> int:
        """Write buffered entries; inside `conn`'s transaction when given."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        now = utcnow()
        rows = [
            {
                "url": url,
                "etag": e.etag,
                "last_modified": e.last_modified,
                "expires_at": e.expires_at,
                "body": e.body,
                "updated_at": now,
            }
            for url, e in sorted(pending.items())
        ]
        try:
            if conn is None:
                with self._engine.begin() as own:
                    self._upsert(own, rows)
            else:
                self._upsert(conn, rows)
        except BaseException:
            with self._lock:  # not written: keep them for the next flush
                for url, entry in pending.items():
                    self._pending.setdefault(url, entry)
            raise
        return len(rows)

    def forget_loaded(self) -> None:
        with self._lock:
            self._loaded.clear()

    @staticmethod
    def _upsert(conn: sa.Connection, rows: list[dict]) -> None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(t.esi_cache)
        stmt = stmt.on_conflict_do_update(
            index_elements=["url"],
            set_={c: stmt.excluded[c] for c in ("etag", "last_modified", "expires_at", "body", "updated_at")},
        )
        conn.execute(stmt, rows)


def _entry(row: sa.Row) -> CacheEntry:
    return CacheEntry(
        etag=row.etag, last_modified=row.last_modified, expires_at=row.expires_at, body=row.body
    )
