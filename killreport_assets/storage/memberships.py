"""Alliance member lists: the current lists (`alliance_corporations`) and their joins and leaves
(`alliance_membership_history`), diffed per alliance so only what changed is written."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import chunks, insert, utcnow
from killreport_assets.storage.unit import Finished, WriteCounts

_members = tables.alliance_corporations
_history = tables.membership_history
_alliances = tables.alliances
_corporations = tables.corporations

Pair = tuple[int, int]  # (alliance id, corporation id)


class AllianceMembers:
    """A `Store` for member lists: values carry `corporation_ids`; a 404 (gone) means no members."""

    name = _members.name

    def write(self, conn: sa.Connection, batch: Sequence[Finished], now: dt.datetime) -> WriteCounts:
        lists: dict[int, set[int]] = {}
        refresh_of: dict[int, str] = {}
        for item in batch:
            alliance_id = item.entry.entity_id
            if item.gone:
                lists[alliance_id] = set()
            elif item.value is not None:
                lists[alliance_id] = set(item.value.corporation_ids)  # type: ignore[attr-defined]
            else:
                continue
            refresh_of[alliance_id] = item.entry.refresh_id
        if not lists:
            return WriteCounts()
        current = _current(conn, lists)
        joins = [(a, c) for a, corporations in lists.items() for c in corporations - current.get(a, set())]
        leaves = [(a, c) for a, corporations in current.items() for c in corporations - lists[a]]
        return _record(conn, joins, leaves, refresh_of.__getitem__, now)


class Memberships:
    """Step-level membership work and the queries the assets and checks need."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def drop_memberships_of_closed_alliances(self, refresh_id: str) -> int:
        """Closed alliances have no members: remove what is left of their lists, as leaves."""
        query = (
            sa.select(_members.c.alliance_id, _members.c.corporation_id)
            .join(_alliances, _alliances.c.id == _members.c.alliance_id, isouter=True)
            .where(sa.or_(_alliances.c.id.is_(None), _alliances.c.closed_at.is_not(None)))
        )
        with self._engine.begin() as conn:
            leaves = [(row.alliance_id, row.corporation_id) for row in conn.execute(query)]
            _record(conn, [], leaves, lambda _: refresh_id, utcnow())
        return len(leaves)

    def corporation_ids_to_refresh(self) -> tuple[list[int], list[int]]:
        """(member corporations, leavers): every listed member, plus every open corporation whose
        stored `alliance_id` is no longer backed by a membership row."""
        backed = sa.exists().where(
            _members.c.alliance_id == _corporations.c.alliance_id,
            _members.c.corporation_id == _corporations.c.id,
        )
        leavers_query = sa.select(_corporations.c.id).where(
            _corporations.c.alliance_id.is_not(None), _corporations.c.closed_at.is_(None), ~backed
        )
        with self._engine.connect() as conn:
            members = set(conn.scalars(sa.select(_members.c.corporation_id).distinct()))
            leavers = set(conn.scalars(leavers_query))
        return sorted(members), sorted(leavers - members)

    def events(self, refresh_id: str) -> dict[str, int]:
        """Joins and leaves one refresh recorded, by event."""
        query = (
            sa.select(_history.c.event, sa.func.count())
            .where(_history.c.refresh_id == refresh_id)
            .group_by(_history.c.event)
        )
        with self._engine.connect() as conn:
            return {event: count for event, count in conn.execute(query)}

    def count(self) -> int:
        with self._engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(_members))

    def dangling(self) -> list[int]:
        """Member corporations with no row in `corporations`, or a closed one."""
        query = (
            sa.select(_members.c.corporation_id)
            .join(_corporations, _corporations.c.id == _members.c.corporation_id, isouter=True)
            .where(sa.or_(_corporations.c.id.is_(None), _corporations.c.closed_at.is_not(None)))
            .order_by(_members.c.corporation_id)
        )
        with self._engine.connect() as conn:
            return list(conn.scalars(query))


def _current(conn: sa.Connection, alliance_ids: Iterable[int]) -> dict[int, set[int]]:
    current: dict[int, set[int]] = defaultdict(set)
    for chunk in chunks(sorted(alliance_ids)):
        query = sa.select(_members.c.alliance_id, _members.c.corporation_id).where(
            _members.c.alliance_id.in_(chunk)
        )
        for alliance_id, corporation_id in conn.execute(query):
            current[alliance_id].add(corporation_id)
    return current


def _record(
    conn: sa.Connection, joins: list[Pair], leaves: list[Pair], refresh_of, now: dt.datetime
) -> WriteCounts:
    if joins:
        conn.execute(
            insert(conn, _members).on_conflict_do_nothing(),
            [{"alliance_id": a, "corporation_id": c, "first_seen_at": now} for a, c in joins],
        )
    if leaves:
        conn.execute(
            _members.delete().where(
                _members.c.alliance_id == sa.bindparam("a"), _members.c.corporation_id == sa.bindparam("c")
            ),
            [{"a": a, "c": c} for a, c in leaves],
        )
    history = [
        {
            "alliance_id": a,
            "corporation_id": c,
            "event": event,
            "observed_at": now,
            "refresh_id": refresh_of(a),
        }
        for event, pairs in (("joined", joins), ("left", leaves))
        for a, c in pairs
    ]
    if history:
        conn.execute(_history.insert(), history)
    return WriteCounts(joined=len(joins), left=len(leaves))
