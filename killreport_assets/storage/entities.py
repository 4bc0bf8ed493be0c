"""Entity tables (alliances, corporations, and any kind added later): compare-then-upsert.

A batch's existing rows are read in one query and only new or changed rows are sent, in one dialect
upsert: a same-day re-run changes nothing, `updated_at` moves only when data moved, and the
created/updated counts are exact. The columns written are those the table and the ESI model share,
so a kind declares no field list of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import chunks, insert
from killreport_assets.storage.unit import Finished, WriteCounts

# Columns storage itself maintains: never taken from an ESI model, never compared.
_BOOKKEEPING = frozenset({"id", "created_at", "updated_at", "closed_at", "confirmed_at"})


class EntityTable:
    """A `Store` that keeps one row per entity id in `table`.

    `table` is a name in the application schema, or a `Table` of its own (an extension's). ESI's 404
    ("gone") sets `closed_at` and clears `clear_when_gone`; a model whose `closed` is true closes the
    row as well. `keep_if_absent` columns keep their stored value when an answer omits them (ESI has
    shapes that leave out fields the entity still has). With `closed_by_listing`, only the kind's
    listing (`Listing.sync`) reopens a closed row: a detail fetched for an entity ESI no longer lists
    (`killreport enqueue`) does not.
    """

    def __init__(
        self,
        table: str | sa.Table,
        *,
        keep_if_absent: frozenset[str] = frozenset(),
        clear_when_gone: tuple[str, ...] = (),
        closed_by_listing: bool = False,
    ) -> None:
        self._table = table
        self.keep_if_absent = keep_if_absent
        self.clear_when_gone = clear_when_gone
        self.closed_by_listing = closed_by_listing

    @cached_property
    def table(self) -> sa.Table:
        return self._table if isinstance(self._table, sa.Table) else tables.metadata.tables[self._table]

    @property
    def name(self) -> str:
        return self.table.name

    def write(self, conn: sa.Connection, batch: Sequence[Finished], now: dt.datetime) -> WriteCounts:
        rows, gone, answered = [], [], set()
        for item in batch:
            if item.gone:
                gone.append(item.entry.entity_id)
            elif item.value is not None:
                rows.append(self._row(item.entry.entity_id, item.value, now))
                if item.entry.http_status is not None:  # ESI answered (200 or 304), not the cache
                    answered.add(item.entry.entity_id)
        counts = self._sync(conn, rows, answered, now)
        counts["closed"] += self.close(conn, gone, now)
        return counts

    def close(self, conn: sa.Connection, ids: Sequence[int], now: dt.datetime) -> int:
        """Close the open rows among `ids`; returns how many were open."""
        table, closed = self.table, 0
        values = {"closed_at": now, "updated_at": now, **dict.fromkeys(self.clear_when_gone)}
        for chunk in chunks(sorted(ids)):
            result = conn.execute(
                table.update().where(table.c.id.in_(chunk), table.c.closed_at.is_(None)).values(**values)
            )
            closed += result.rowcount
        return closed

    def reopen(self, conn: sa.Connection, ids: Sequence[int], now: dt.datetime) -> None:
        table = self.table
        for chunk in chunks(sorted(ids)):
            conn.execute(table.update().where(table.c.id.in_(chunk)).values(closed_at=None, updated_at=now))

    def _row(self, entity_id: int, value: Any, now: dt.datetime) -> dict[str, Any]:
        model_fields = type(value).model_fields
        row = {
            c.name: getattr(value, c.name)
            for c in self.table.columns
            if c.name in model_fields and c.name not in _BOOKKEEPING
        }
        row["id"] = entity_id
        if "closed_at" in self.table.c and not self.closed_by_listing:
            row["closed_at"] = now if getattr(value, "closed", False) else None
        return row

    def _sync(
        self, conn: sa.Connection, rows: list[dict[str, Any]], answered: set[int], now: dt.datetime
    ) -> WriteCounts:
        counts = WriteCounts()
        if not rows:
            return counts
        table = self.table
        columns = [c for c in rows[0] if c != "id"]
        existing: dict[int, sa.Row] = {}
        for chunk in chunks([row["id"] for row in rows]):
            for row in conn.execute(sa.select(table).where(table.c.id.in_(chunk))):
                existing[row.id] = row
        changed = []
        for row in rows:
            old = existing.get(row["id"])
            if old is None:
                changed.append({**row, "created_at": now, "updated_at": now})
                counts["created"] += 1
                continue
            merged = {
                c: getattr(old, c) if c in self.keep_if_absent and row[c] is None else row[c] for c in columns
            }
            if merged.get("closed_at") is not None and old.closed_at is not None:
                merged["closed_at"] = old.closed_at  # keep when it was first seen closed
            if all(merged[c] == getattr(old, c) for c in columns):
                counts["unchanged"] += 1
                continue
            changed.append({"id": row["id"], **merged, "created_at": old.created_at, "updated_at": now})
            counts["updated"] += 1
        stamps = ["updated_at"]
        if "confirmed_at" in table.c:  # when ESI last answered for the row, changed or not
            stamps.append("confirmed_at")
            for row in changed:
                old = existing.get(row["id"])
                row["confirmed_at"] = now if row["id"] in answered or old is None else old.confirmed_at
            written = {row["id"] for row in changed}
            confirmed = sorted(answered - written)
            for chunk in chunks(confirmed):
                conn.execute(table.update().where(table.c.id.in_(chunk)).values(confirmed_at=now))
        if changed:
            stmt = insert(conn, table)
            set_ = {c: stmt.excluded[c] for c in [*columns, *stamps]}  # created_at is never overwritten
            conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=set_), changed)
        return counts
