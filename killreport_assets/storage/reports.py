"""Read-only figures for materialization metadata: what changed, the universe's size, samples."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from killreport_assets.storage import tables

_alliances = tables.alliances
_corporations = tables.corporations
_members = tables.alliance_corporations

# The tables the killboard reads.
CONTRACT_TABLES = (
    tables.alliances,
    tables.alliance_corporations,
    tables.corporations,
    tables.alliance_snapshots,
    tables.corporation_snapshots,
)

# Per sample: the columns shown and the order that puts the interesting rows first.
_SAMPLES: dict[str, tuple[sa.Table, tuple[str, ...], tuple[sa.ColumnElement, ...]]] = {
    "alliances": (
        _alliances,
        ("id", "name", "ticker", "executor_corporation_id"),
        (_alliances.c.id,),
    ),
    "alliance_corporations": (
        _members,
        ("alliance_id", "corporation_id", "first_seen_at"),
        (_members.c.first_seen_at.desc(), _members.c.alliance_id),
    ),
    "corporations": (
        _corporations,
        ("id", "name", "ticker", "alliance_id", "member_count"),
        (_corporations.c.member_count.desc(),),
    ),
    "alliance_snapshots": (
        tables.alliance_snapshots,
        ("alliance_id", "member_count", "corporation_count"),
        (tables.alliance_snapshots.c.member_count.desc(),),
    ),
    "corporation_snapshots": (
        tables.corporation_snapshots,
        ("corporation_id", "member_count"),
        (tables.corporation_snapshots.c.member_count.desc(),),
    ),
}


class Reports:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def table_changes(self, table: str, since: dt.datetime) -> dict[str, int]:
        """Rows of an entity table created, updated and closed since `since` (exact: `updated_at`
        moves only on change)."""
        entity = tables.metadata.tables[table]
        query = sa.select(
            sa.func.count().filter(entity.c.created_at >= since),
            sa.func.count().filter(entity.c.updated_at >= since, entity.c.created_at < since),
            sa.func.count().filter(entity.c.closed_at >= since),
        )
        with self._engine.connect() as conn:
            created, updated, closed = conn.execute(query).one()
        return {"created": created, "updated": updated, "closed": closed}

    def universe_series(self) -> dict[str, int]:
        """The figures plotted across runs: open alliances, open corporations, total members."""
        open_corporations = _corporations.c.closed_at.is_(None)
        with self._engine.connect() as conn:
            return {
                "alliances": conn.scalar(sa.select(sa.func.count()).where(_alliances.c.closed_at.is_(None))),
                "corporations": conn.scalar(sa.select(sa.func.count()).where(open_corporations)),
                "total_members": int(
                    conn.scalar(
                        sa.select(sa.func.coalesce(sa.func.sum(_corporations.c.member_count), 0)).where(
                            open_corporations, _corporations.c.alliance_id.is_not(None)
                        )
                    )
                ),
            }

    def sample(self, table: str, *, snapshot_date: dt.date | None = None, limit: int = 10) -> pd.DataFrame:
        """The first `limit` rows of a contract table, in the order that shows the interesting ones."""
        source, columns, order = _SAMPLES[table]
        query = sa.select(*(source.c[c] for c in columns)).order_by(*order).limit(limit)
        if snapshot_date is not None:
            query = query.where(source.c.snapshot_date == snapshot_date)
        with self._engine.connect() as conn:
            return pd.read_sql(query, conn)

    def row_counts(self) -> dict[str, int]:
        """Rows in each table the killboard reads."""
        with self._engine.connect() as conn:
            return {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) for t in CONTRACT_TABLES}
