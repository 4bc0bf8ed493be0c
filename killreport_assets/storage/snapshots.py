"""Dated snapshots of alliance and corporation sizes, computed by SQL inside the database, and the
queries their checks need."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import utcnow

_alliances = tables.alliances
_members = tables.alliance_corporations
_corporations = tables.corporations
_alliance_snapshots = tables.alliance_snapshots
_corporation_snapshots = tables.corporation_snapshots


_OF = tables.SNAPSHOTS


class Snapshots:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def write_alliance_snapshot(self, day: dt.date) -> int:
        """Replace `day`'s alliance snapshot, computed from current memberships, and carry the same
        figures into `alliances.member_count` / `corporation_count`."""
        now = utcnow()
        figures = (
            sa.select(
                _alliances.c.id.label("alliance_id"),
                sa.func.coalesce(sa.func.sum(_corporations.c.member_count), 0).label("member_count"),
                sa.func.count(_corporations.c.id).label("corporation_count"),
            )
            .select_from(_alliances)
            .join(_members, _members.c.alliance_id == _alliances.c.id, isouter=True)
            .join(
                _corporations,
                sa.and_(_corporations.c.id == _members.c.corporation_id, _corporations.c.closed_at.is_(None)),
                isouter=True,
            )
            .where(_alliances.c.closed_at.is_(None))
            .group_by(_alliances.c.id)
            .subquery()
        )
        rows = sa.select(
            figures.c.alliance_id,
            sa.literal(day, sa.Date),
            figures.c.member_count,
            figures.c.corporation_count,
            sa.literal(now, tables.UTC_TIME),
        )
        columns = ["alliance_id", "snapshot_date", "member_count", "corporation_count", "created_at"]
        with self._engine.begin() as conn:
            count = _replace_day(conn, _alliance_snapshots, day, columns, rows)

            def of_day(column: sa.Column) -> sa.ScalarSelect:
                return (
                    sa.select(column)
                    .where(
                        _alliance_snapshots.c.alliance_id == _alliances.c.id,
                        _alliance_snapshots.c.snapshot_date == day,
                    )
                    .scalar_subquery()
                )

            member_count = of_day(_alliance_snapshots.c.member_count)
            corporation_count = of_day(_alliance_snapshots.c.corporation_count)
            conn.execute(
                _alliances.update()
                .where(
                    _alliances.c.closed_at.is_(None),
                    sa.or_(
                        _alliances.c.member_count != member_count,
                        _alliances.c.corporation_count != corporation_count,
                    ),
                )
                .values(member_count=member_count, corporation_count=corporation_count, updated_at=now)
            )
            conn.execute(
                _alliances.update()
                .where(
                    _alliances.c.closed_at.is_not(None),
                    sa.or_(_alliances.c.member_count != 0, _alliances.c.corporation_count != 0),
                )
                .values(member_count=0, corporation_count=0, updated_at=now)
            )
        return count

    def write_corporation_snapshot(self, day: dt.date) -> int:
        """Replace `day`'s corporation snapshot: one row per corporation that is not closed, with the
        member count ESI last confirmed and when (`confirmed_at`)."""
        rows = sa.select(
            _corporations.c.id,
            sa.literal(day, sa.Date),
            _corporations.c.member_count,
            _corporations.c.confirmed_at,
            sa.literal(utcnow(), tables.UTC_TIME),
        ).where(_corporations.c.closed_at.is_(None))
        with self._engine.begin() as conn:
            return _replace_day(
                conn,
                _corporation_snapshots,
                day,
                ["corporation_id", "snapshot_date", "member_count", "confirmed_at", "created_at"],
                rows,
            )

    def latest_date(self, of: str) -> dt.date | None:
        """The latest snapshot date of `of` ("alliance" or "corporation")."""
        snapshots, _, _ = _OF[of]
        with self._engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.max(snapshots.c.snapshot_date)))

    def open_missing_from(self, of: str, day: dt.date | None) -> list[int]:
        """Open alliances or corporations (`of`) without a snapshot row for `day`."""
        snapshots, key, entity = _OF[of]
        has_row = sa.exists().where(snapshots.c[key] == entity.c.id, snapshots.c.snapshot_date == day)
        query = sa.select(entity.c.id).where(entity.c.closed_at.is_(None), ~has_row).order_by(entity.c.id)
        with self._engine.connect() as conn:
            return list(conn.scalars(query))

    def corporation_figures_differing(self, day: dt.date | None) -> list[int]:
        """Corporations whose `day` snapshot row does not carry the member count and confirmation
        time `corporations` holds (right after the snapshot, there must be none)."""
        snapshots = _corporation_snapshots
        query = (
            sa.select(snapshots.c.corporation_id)
            .join(_corporations, _corporations.c.id == snapshots.c.corporation_id)
            .where(
                snapshots.c.snapshot_date == day,
                sa.or_(
                    snapshots.c.member_count != _corporations.c.member_count,
                    snapshots.c.confirmed_at.is_distinct_from(_corporations.c.confirmed_at),
                ),
            )
            .order_by(snapshots.c.corporation_id)
        )
        with self._engine.connect() as conn:
            return list(conn.scalars(query))

    def alliance_totals(self, day: dt.date | None) -> dict[str, dict[str, int]]:
        """(corporations, members) summed three ways, which must agree: `day`'s snapshot, the
        `alliances` table, and the memberships of open alliances to open corporations."""
        open_alliances = _alliances.c.closed_at.is_(None)
        snapshot = sa.select(
            sa.func.coalesce(sa.func.sum(_alliance_snapshots.c.corporation_count), 0),
            sa.func.coalesce(sa.func.sum(_alliance_snapshots.c.member_count), 0),
        ).where(_alliance_snapshots.c.snapshot_date == day)
        table = sa.select(
            sa.func.coalesce(sa.func.sum(_alliances.c.corporation_count), 0),
            sa.func.coalesce(sa.func.sum(_alliances.c.member_count), 0),
        ).where(open_alliances)
        memberships = (
            sa.select(
                sa.func.count(_corporations.c.id),
                sa.func.coalesce(sa.func.sum(_corporations.c.member_count), 0),
            )
            .select_from(_members)
            .join(_alliances, _alliances.c.id == _members.c.alliance_id)
            .join(_corporations, _corporations.c.id == _members.c.corporation_id)
            .where(open_alliances, _corporations.c.closed_at.is_(None))
        )
        with self._engine.connect() as conn:
            return {
                name: dict(zip(("corporations", "members"), map(int, conn.execute(query).one()), strict=True))
                for name, query in (
                    ("snapshot", snapshot),
                    ("alliances_table", table),
                    ("memberships", memberships),
                )
            }

    def member_totals_by_day(self, days: int) -> list[tuple[dt.date, int]]:
        """Total members over all alliance snapshots, for the latest `days` dates, newest first."""
        query = (
            sa.select(_alliance_snapshots.c.snapshot_date, sa.func.sum(_alliance_snapshots.c.member_count))
            .group_by(_alliance_snapshots.c.snapshot_date)
            .order_by(_alliance_snapshots.c.snapshot_date.desc())
            .limit(days)
        )
        with self._engine.connect() as conn:
            return [(day, int(total or 0)) for day, total in conn.execute(query)]


def _replace_day(
    conn: sa.Connection, table: sa.Table, day: dt.date, columns: list[str], rows: sa.Select
) -> int:
    conn.execute(table.delete().where(table.c.snapshot_date == day))
    conn.execute(table.insert().from_select(columns, rows))
    return conn.scalar(sa.select(sa.func.count()).where(table.c.snapshot_date == day))
