"""Kinds whose universe ESI lists (alliances): what is listed is open, what is not is closed."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from killreport_assets.esi.cache import CacheEntry
from killreport_assets.storage.cache import EsiCache
from killreport_assets.storage.entities import EntityTable
from killreport_assets.storage.sql import utcnow

# Below this many closures a night is never suspicious, whatever the share (a small universe).
GUARD_MIN_CLOSURES = 10


class ListingShrank(RuntimeError):
    """ESI's list would close more open entities than a night plausibly does: probably a partial
    answer. Nothing was closed."""


class Listing:
    def __init__(self, engine: sa.Engine, cache: EsiCache) -> None:
        self._engine = engine
        self._cache = cache

    def sync(
        self,
        store: EntityTable,
        listed: Iterable[int],
        response: tuple[str, CacheEntry] | None = None,
        *,
        max_close_share: float = 1.0,
    ) -> tuple[int, int]:
        """Close the rows ESI stopped listing and reopen those listed again, and keep the list's
        response, in one transaction. Returns (closed, reopened). Reopened rows are refreshed by their
        detail job anyway; reopening here keeps the table right even when that job fails.

        Raises `ListingShrank`, closing nothing, when more than `max_close_share` of the open rows
        (and more than `GUARD_MIN_CLOSURES`) would close. The response is kept all the same: ESI
        serves the same answer until it expires, so asking again sooner would only repeat it."""
        listed_set, table, now = set(listed), store.table, utcnow()
        refusal = None
        with self._engine.begin() as conn:
            if response is not None:  # kept either way: asking again before it expires gets the same
                self._cache.write(conn, [response], now)
            rows = conn.execute(sa.select(table.c.id, table.c.closed_at)).all()
            to_close = [r.id for r in rows if r.id not in listed_set and r.closed_at is None]
            to_open = [r.id for r in rows if r.id in listed_set and r.closed_at is not None]
            open_count = sum(1 for r in rows if r.closed_at is None)
            if len(to_close) > GUARD_MIN_CLOSURES and len(to_close) > max_close_share * open_count:
                refusal = ListingShrank(
                    f"ESI listed {len(listed_set)} {store.name}; closing the {len(to_close)} open ones it "
                    f"left out would close {len(to_close) / open_count:.1%} of the {open_count} open "
                    f"{store.name}, more than the {max_close_share:.0%} allowed. Probably a partial answer: "
                    "nothing was closed. Re-run once ESI's answer has expired; if the closures are "
                    "real, allow them for one run with KILLREPORT_MAX_CLOSE_SHARE=1."
                )
            else:
                closed = store.close(conn, to_close, now)
                store.reopen(conn, to_open, now)
        if refusal is not None:
            raise refusal
        return closed, len(to_open)

    def open_ids(self, store: EntityTable) -> list[int]:
        table = store.table
        with self._engine.connect() as conn:
            return list(
                conn.scalars(sa.select(table.c.id).where(table.c.closed_at.is_(None)).order_by(table.c.id))
            )
