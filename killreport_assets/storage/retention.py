"""Retention: what the database keeps only for a while, so it does not grow without end.

The refresh ledger gains a row per entity per night (~25,000) and is needed only to run, resume
and report a refresh; the ESI cache keeps an answer per URL ever fetched, and only recent ones save
requests. Rows of the coordination tables of processes long gone go too. The contract's tables
and their history are never touched.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import utcnow

_ledger = tables.refresh_ledger
# A process's pause and fleet rows outlive it by this much: long enough to read in a post-mortem.
_GONE = dt.timedelta(days=1)


@dataclass(frozen=True)
class Pruned:
    ledger_rows: int
    refreshes: int
    cache_entries: int
    process_rows: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Retention:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def prune(self, *, ledger_days: int, cache_days: int, now: dt.datetime | None = None) -> Pruned:
        """Delete ledger rows of refreshes started more than `ledger_days` ago (one refresh per
        transaction, so a first prune of a large ledger never holds one huge one), ESI answers not
        renewed for `cache_days`, and pause and fleet rows of processes silent for a day."""
        now = now or utcnow()
        ledger_before = now - dt.timedelta(days=ledger_days)
        old = sa.select(_ledger.c.refresh_id).where(_ledger.c.created_at < ledger_before).distinct()
        with self._engine.connect() as conn:
            refreshes = list(conn.execute(old).scalars())
        ledger_rows = 0
        for refresh_id in refreshes:
            with self._engine.begin() as conn:
                ledger_rows += conn.execute(
                    sa.delete(_ledger).where(_ledger.c.refresh_id == refresh_id)
                ).rowcount
        cache = tables.esi_cache
        pauses, fleet = tables.esi_pauses, tables.esi_fleet
        with self._engine.begin() as conn:
            cache_entries = conn.execute(
                sa.delete(cache).where(cache.c.updated_at < now - dt.timedelta(days=cache_days))
            ).rowcount
            process_rows = conn.execute(
                sa.delete(pauses).where(pauses.c.updated_at < now - _GONE, pauses.c.paused_until < now)
            ).rowcount
            process_rows += conn.execute(
                sa.delete(fleet).where(fleet.c.heartbeat_at < (now - _GONE).timestamp())
            ).rowcount
        return Pruned(ledger_rows, len(refreshes), cache_entries, process_rows)
