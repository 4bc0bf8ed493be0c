"""Read-only figures for materialization metadata: what changed, the universe's size, samples,
movers and history for charts, and the contract tables' columns for the asset catalog."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import utcnow

if TYPE_CHECKING:  # pandas is imported where a figure is made, not by every process that stores data
    import pandas as pd

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
        ("id", "name", "ticker", "member_count", "corporation_count", "executor_corporation_id"),
        (_alliances.c.member_count.desc(), _alliances.c.id),
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


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # as PostgreSQL spells it
    nullable: bool
    primary_key: bool


def columns(table: str | sa.Table) -> list[ColumnInfo]:
    """The columns of a table (of the schema, by name), as defined: the asset catalog's one source."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    defined = table if isinstance(table, sa.Table) else tables.metadata.tables[table]
    return [
        ColumnInfo(c.name, c.type.compile(dialect=dialect), bool(c.nullable), c.primary_key)
        for c in defined.columns
    ]


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

    def names(self, table: str) -> dict[int, str]:
        """id → name of the open rows of an entity table (to tell renames after a step)."""
        entity = tables.metadata.tables[table]
        query = sa.select(entity.c.id, entity.c.name).where(entity.c.closed_at.is_(None))
        with self._engine.connect() as conn:
            return {row.id: row.name for row in conn.execute(query)}

    def movers(self, of: str, day: dt.date, limit: int = 10) -> pd.DataFrame:
        """The `limit` largest member-count changes between `day`'s snapshot and the one before it
        (`of`: "alliance" or "corporation"): id, name, before, after, change; empty on the first day."""
        import pandas as pd

        snapshots, key, entity = tables.SNAPSHOTS[of]
        previous = (
            sa.select(sa.func.max(snapshots.c.snapshot_date))
            .where(snapshots.c.snapshot_date < day)
            .scalar_subquery()
        )
        before = snapshots.alias("before")
        change = snapshots.c.member_count - before.c.member_count
        query = (
            sa.select(
                snapshots.c[key].label("id"),
                entity.c.name,
                before.c.member_count.label("before"),
                snapshots.c.member_count.label("after"),
                change.label("change"),
            )
            .join(before, sa.and_(before.c[key] == snapshots.c[key], before.c.snapshot_date == previous))
            .join(entity, entity.c.id == snapshots.c[key])
            .where(snapshots.c.snapshot_date == day, change != 0)
            .order_by(sa.func.abs(change).desc(), snapshots.c[key])
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return pd.read_sql(query, conn)

    def largest_alliances_history(self, top: int = 8, days: int = 60) -> pd.DataFrame:
        """Member counts of today's `top` largest open alliances over the last `days` days of
        snapshots: one row per date, one column per alliance (by name)."""
        import pandas as pd

        snapshots = tables.alliance_snapshots
        latest = sa.select(sa.func.max(snapshots.c.snapshot_date)).scalar_subquery()
        largest = (
            sa.select(snapshots.c.alliance_id)
            .where(snapshots.c.snapshot_date == latest)
            .order_by(snapshots.c.member_count.desc(), snapshots.c.alliance_id)
            .limit(top)
        )
        since = (utcnow() - dt.timedelta(days=days)).date()
        query = (
            sa.select(snapshots.c.snapshot_date, _alliances.c.name, snapshots.c.member_count)
            .join(_alliances, _alliances.c.id == snapshots.c.alliance_id)
            .where(snapshots.c.alliance_id.in_(largest), snapshots.c.snapshot_date >= since)
            .order_by(snapshots.c.snapshot_date)
        )
        with self._engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        if frame.empty:
            return frame
        return frame.pivot_table(index="snapshot_date", columns="name", values="member_count", aggfunc="sum")

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
        import pandas as pd

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
