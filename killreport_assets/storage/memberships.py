"""Alliance member lists: the current lists (`alliance_corporations`) and their joins and leaves
(`alliance_membership_history`), diffed per alliance so only what changed is written."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import chunks, insert, utcnow
from killreport_assets.storage.unit import Finished, WriteCounts

_members = tables.alliance_corporations
_history = tables.membership_history
_alliances = tables.alliances
_corporations = tables.corporations

Pair = tuple[int, int]  # (alliance id, corporation id)


@dataclass(frozen=True)
class CorporationSelection:
    """The corporations one night refreshes, by why."""

    members: list[int]
    leavers: list[int]
    revalidated: list[int]  # in no alliance: this night's share of the periodic revalidation
    unaffiliated: int  # open corporations in no alliance, known to us

    @property
    def ids(self) -> list[int]:
        return [*self.members, *self.leavers, *self.revalidated]


class AllianceMembers:
    """A `Store` for member lists: values carry `corporation_ids`. A closed alliance's members are
    dropped by `Memberships.drop_memberships_of_closed_alliances`, never because of one answer."""

    name = _members.name
    table = _members

    def write(self, conn: sa.Connection, batch: Sequence[Finished], now: dt.datetime) -> WriteCounts:
        lists: dict[int, set[int]] = {}
        refresh_of: dict[int, str] = {}
        for item in batch:
            alliance_id = item.entry.entity_id
            if item.value is None:
                continue
            lists[alliance_id] = set(item.value.corporation_ids)  # type: ignore[attr-defined]
            refresh_of[alliance_id] = item.entry.refresh_id
        if not lists:
            return WriteCounts()
        _lock_lists(conn, lists)
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

    def corporations_to_refresh(self, revalidate_days: int) -> CorporationSelection:
        """Every listed member; every open corporation whose stored `alliance_id` is no longer backed
        by a membership (leavers); and the night's share of the other open corporations (in no
        alliance), so that each is confirmed by ESI at least every `revalidate_days` days: the
        longest unconfirmed first, 1/`revalidate_days` of them a night, plus any already due."""
        backed = sa.exists().where(
            _members.c.alliance_id == _corporations.c.alliance_id,
            _members.c.corporation_id == _corporations.c.id,
        )
        open_corporations = sa.select(
            _corporations.c.id,
            _corporations.c.alliance_id,
            _corporations.c.confirmed_at,
            backed.label("backed"),
        ).where(_corporations.c.closed_at.is_(None))
        with self._engine.connect() as conn:
            members = set(conn.scalars(sa.select(_members.c.corporation_id).distinct()))
            rows = conn.execute(open_corporations).all()
        leavers = {r.id for r in rows if r.alliance_id is not None and not r.backed} - members
        unaffiliated = sorted(
            (r for r in rows if r.id not in members and r.id not in leavers),
            key=lambda r: (r.confirmed_at is not None, r.confirmed_at or dt.datetime.min, r.id),
        )
        due_before = utcnow() - dt.timedelta(days=revalidate_days - 1)
        share = math.ceil(len(unaffiliated) / revalidate_days)
        revalidated = [
            r.id
            for i, r in enumerate(unaffiliated)
            if i < share or r.confirmed_at is None or r.confirmed_at < due_before
        ]
        return CorporationSelection(sorted(members), sorted(leavers), sorted(revalidated), len(unaffiliated))

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


# Namespace of the per-alliance advisory locks (the migration lock uses the one-key form).
_LOCK_NAMESPACE = 0x6D656D62  # "memb"


def _lock_lists(conn: sa.Connection, alliance_ids: Iterable[int]) -> None:
    """Serialise writers of one alliance's list until this transaction ends, so that two deliveries
    of the same list (a redelivery, enrichment racing the nightly job) cannot both read the old list
    and both record the same joins. In id order, so writers never deadlock. SQLite has one writer."""
    if conn.dialect.name != "postgresql":
        return
    for alliance_id in sorted(alliance_ids):
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
            {"namespace": _LOCK_NAMESPACE, "key": alliance_lock_key(alliance_id)},
        )


def alliance_lock_key(alliance_id: int) -> int:
    """The second half of an alliance's lock: a 32-bit key (a rare shared key only serialises two
    alliances' writers)."""
    return alliance_id % 2_147_483_647


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
