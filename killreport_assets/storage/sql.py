"""Small SQL helpers every storage module shares: the dialect's upsert, chunked IN lists, UTC now."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

# Rows per IN list or per multi-row statement: well inside SQLite's and psycopg2's parameter limits.
CHUNK = 500


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_update` / `on_conflict_do_nothing`."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def upsert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert `rows`, or overwrite every non-key column they carry where the key already exists."""
    if not rows:
        return
    stmt = insert(conn, table)
    columns = [c for c in rows[0] if c not in keys]
    conn.execute(
        stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}),
        rows,
    )


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
