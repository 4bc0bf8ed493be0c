"""The unit of work: everything one batch of finished jobs writes, in one transaction.

Each job's data (through its kind's `Store`), its ledger row and the ESI response it came from are
committed together or not at all: a crash never leaves data without its ledger row, a ledger row
without its data, or a cache entry whose body was never written (which would make the next night
answer "304, unchanged" for data that is not there).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa

from killreport_assets.esi.cache import CacheEntry
from killreport_assets.storage.cache import EsiCache
from killreport_assets.storage.ledger import Ledger, LedgerEntry, LedgerStatus
from killreport_assets.storage.sql import utcnow


class WriteCounts(Counter[str]):
    """What a write did, by name: rows `created`, `updated`, `unchanged` and `closed`, memberships
    `joined` and `left`. Read as attributes (`counts.created`); a count never set is 0."""

    def __getattr__(self, name: str) -> int:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


class Finished(Protocol):
    """One finished job, as storage sees it (the job layer's `Outcome` is one)."""

    @property
    def entry(self) -> LedgerEntry: ...

    @property
    def store(self) -> Store: ...

    @property
    def value(self) -> object | None: ...

    @property
    def response(self) -> tuple[str, CacheEntry] | None: ...

    @property
    def gone(self) -> bool: ...


class Store(Protocol):
    """Where one entity kind's data goes: writes a batch of its finished jobs in the caller's transaction."""

    @property
    def table(self) -> sa.Table:
        """The table the killboard reads the kind from (the asset catalog shows its columns)."""
        ...

    def write(self, conn: sa.Connection, batch: Sequence[Finished], now: dt.datetime) -> WriteCounts: ...


def apply(engine: sa.Engine, ledger: Ledger, cache: EsiCache, batch: Sequence[Finished]) -> WriteCounts:
    counts = WriteCounts()
    if not batch:
        return counts
    now = utcnow()
    by_store: dict[int, list[Finished]] = defaultdict(list)
    for item in batch:
        if item.entry.status in (LedgerStatus.DONE, LedgerStatus.UNCHANGED, LedgerStatus.GONE):
            by_store[id(item.store)].append(item)
    with engine.begin() as conn:
        for items in by_store.values():
            counts.update(items[0].store.write(conn, items, now))
        ledger.write(conn, [item.entry for item in batch], now)
        cache.write(conn, [item.response for item in batch if item.response is not None], now)
    return counts
