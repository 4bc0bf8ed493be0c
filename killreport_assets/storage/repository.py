"""All reads and writes of the application data, in bulk, on PostgreSQL and SQLite alike.

Writes are compare-then-upsert: a batch's existing rows are read in one query, only new or changed
rows are sent (in one dialect upsert per table), so a same-day re-run changes nothing, `updated_at`
moves only when data moved, and the created/updated counts are exact.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from killreport_assets.jobs.model import JobKind, LedgerStatus, Outcome
from killreport_assets.storage import tables as t
from killreport_assets.storage.database import create_engine

_CHUNK = 500

ALLIANCE_FIELDS = (
    "name",
    "ticker",
    "date_founded",
    "creator_corporation_id",
    "creator_id",
    "executor_corporation_id",
    "faction_id",
)
CORPORATION_FIELDS = (
    "name",
    "ticker",
    "member_count",
    "ceo_id",
    "creator_id",
    "date_founded",
    "description",
    "alliance_id",
    "faction_id",
    "home_station_id",
    "shares",
    "tax_rate",
    "url",
    "war_eligible",
)
# Fields one of ESI's two corporation shapes may omit although the entity still has them: an answer
# without them must not clear what an earlier answer stored.
CORPORATION_KEEP_IF_ABSENT = frozenset(
    {"ceo_id", "creator_id", "date_founded", "description", "home_station_id", "shares", "war_eligible"}
)


@dataclass(frozen=True)
class _Entity:
    """How one ESI entity maps onto its table."""

    table: sa.Table
    fields: tuple[str, ...]
    keep_if_absent: frozenset[str] = frozenset()
    clear_when_gone: tuple[str, ...] = ()


_ALLIANCE_ENTITY = _Entity(t.alliances, ALLIANCE_FIELDS)
# A corporation ESI no longer knows is in no alliance, and must not be refreshed as a leaver nightly.
_CORPORATION_ENTITY = _Entity(
    t.corporations, CORPORATION_FIELDS, CORPORATION_KEEP_IF_ABSENT, ("alliance_id",)
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class WriteCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    closed: int = 0
    joined: int = 0
    left: int = 0

    def add(self, other: WriteCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class StepProgress:
    total: int
    by_status: dict[str, int] = field(default_factory=dict)
    by_http_status: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.by_status.get(LedgerStatus.PENDING, 0)

    @property
    def finished(self) -> int:
        return self.total - self.pending

    @property
    def failed(self) -> int:
        return self.by_status.get(LedgerStatus.FAILED, 0)


class Storage:
    """The application database. Thread-safe: every method uses its own connection from the pool."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Storage:
        return cls(create_engine(url, pool_size=pool_size))

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- the refresh ledger -------------------------------------------------------------------

    def add_pending(self, refresh_id: str, step: str, entity_ids: Iterable[int]) -> None:
        """Record a step's entities as pending; rows a retried step already finished stay finished."""
        now = utcnow()
        rows = [
            {
                "refresh_id": refresh_id,
                "step": step,
                "entity_id": i,
                "status": LedgerStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for i in sorted(set(entity_ids))
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(rows, 2000):
                conn.execute(self._insert(t.refresh_ledger).on_conflict_do_nothing(), chunk)

    def pending_ids(self, refresh_id: str, step: str) -> list[int]:
        ledger = t.refresh_ledger
        query = sa.select(ledger.c.entity_id).where(
            ledger.c.refresh_id == refresh_id,
            ledger.c.step == step,
            ledger.c.status == LedgerStatus.PENDING.value,
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query.order_by(ledger.c.entity_id)))

    def progress(self, refresh_id: str, step: str) -> StepProgress:
        ledger = t.refresh_ledger
        query = (
            sa.select(ledger.c.status, ledger.c.http_status, sa.func.count())
            .where(ledger.c.refresh_id == refresh_id, ledger.c.step == step)
            .group_by(ledger.c.status, ledger.c.http_status)
        )
        by_status: Counter[str] = Counter()
        by_http: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for status, http_status, n in conn.execute(query):
                by_status[status] += n
                if status != LedgerStatus.PENDING:
                    by_http["cache" if http_status is None else str(http_status)] += n
        return StepProgress(
            total=sum(by_status.values()), by_status=dict(by_status), by_http_status=dict(by_http)
        )

    def failures(self, refresh_id: str, step: str) -> list[tuple[int, str | None]]:
        ledger = t.refresh_ledger
        query = (
            sa.select(ledger.c.entity_id, ledger.c.last_error)
            .where(
                ledger.c.refresh_id == refresh_id,
                ledger.c.step == step,
                ledger.c.status == LedgerStatus.FAILED.value,
            )
            .order_by(ledger.c.entity_id)
        )
        with self.engine.connect() as conn:
            return [(row.entity_id, row.last_error) for row in conn.execute(query)]

    # -- applying job outcomes ---------------------------------------------------------------

    def apply(self, outcomes: Sequence[Outcome], *, flush: Any = None) -> WriteCounts:
        """Write a batch of outcomes (data and ledger rows) in one transaction.

        `flush`, when given, is called with the open connection so buffered ESI cache entries commit
        together with the data they describe.
        """
        counts = WriteCounts()
        if not outcomes:
            return counts
        now = utcnow()
        by_kind: dict[JobKind, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_kind[outcome.job.kind].append(outcome)
        with self.engine.begin() as conn:
            for kind, group in by_kind.items():
                counts.add(_WRITERS[kind](self, conn, group, now))
            self._write_ledger(conn, outcomes, now)
            if flush is not None:
                flush(conn)
        return counts

    def _write_ledger(self, conn: sa.Connection, outcomes: Sequence[Outcome], now: dt.datetime) -> None:
        latest = {(o.job.refresh_id, o.job.step, o.job.entity_id): o for o in outcomes}
        rows = [
            {
                "refresh_id": key[0],
                "step": key[1],
                "entity_id": key[2],
                "status": o.status.value,
                "attempts": o.attempts,
                "http_status": o.http_status,
                "last_error": o.error,
                "created_at": now,
                "updated_at": now,
            }
            for key, o in sorted(latest.items())
        ]
        stmt = self._insert(t.refresh_ledger)
        stmt = stmt.on_conflict_do_update(
            index_elements=["refresh_id", "step", "entity_id"],
            set_={
                c: stmt.excluded[c] for c in ("status", "attempts", "http_status", "last_error", "updated_at")
            },
        )
        conn.execute(stmt, rows)

    def _write_alliances(self, conn: sa.Connection, outcomes: list[Outcome], now: dt.datetime) -> WriteCounts:
        return self._write_entities(conn, outcomes, now, _ALLIANCE_ENTITY)

    def _write_corporations(
        self, conn: sa.Connection, outcomes: list[Outcome], now: dt.datetime
    ) -> WriteCounts:
        return self._write_entities(conn, outcomes, now, _CORPORATION_ENTITY)

    def _write_entities(
        self, conn: sa.Connection, outcomes: list[Outcome], now: dt.datetime, entity: _Entity
    ) -> WriteCounts:
        rows = []
        gone = []
        for o in outcomes:
            if o.status is LedgerStatus.GONE:
                gone.append(o.job.entity_id)
            elif o.value is not None:
                row = {f: getattr(o.value, f) for f in entity.fields}
                closed = getattr(o.value, "closed", False)
                row.update(id=o.job.entity_id, closed_at=now if closed else None)
                rows.append(row)
        counts = self._sync_rows(conn, entity.table, rows, now, keep_if_absent=entity.keep_if_absent)
        counts.closed += self._close(conn, entity.table, gone, now, clear=entity.clear_when_gone)
        return counts

    def _write_memberships(
        self, conn: sa.Connection, outcomes: list[Outcome], now: dt.datetime
    ) -> WriteCounts:
        lists: dict[int, set[int]] = {}
        refresh_of: dict[int, str] = {}
        for o in outcomes:
            if o.status is LedgerStatus.GONE:
                lists[o.job.entity_id] = set()
            elif o.value is not None:
                lists[o.job.entity_id] = set(o.value)
            else:
                continue
            refresh_of[o.job.entity_id] = o.job.refresh_id
        if not lists:
            return WriteCounts()
        current = self._memberships(conn, lists)
        joins = [(a, c) for a, corps in lists.items() for c in corps - current.get(a, set())]
        leaves = [(a, c) for a, corps in current.items() for c in corps - lists[a]]
        return self._record_membership_changes(conn, joins, leaves, refresh_of, now)

    def _memberships(self, conn: sa.Connection, alliance_ids: Iterable[int]) -> dict[int, set[int]]:
        ac = t.alliance_corporations
        current: dict[int, set[int]] = defaultdict(set)
        for chunk in _chunks(sorted(alliance_ids), _CHUNK):
            for a, c in conn.execute(
                sa.select(ac.c.alliance_id, ac.c.corporation_id).where(ac.c.alliance_id.in_(chunk))
            ):
                current[a].add(c)
        return current

    def _record_membership_changes(
        self,
        conn: sa.Connection,
        joins: list[tuple[int, int]],
        leaves: list[tuple[int, int]],
        refresh_of: dict[int, str] | str,
        now: dt.datetime,
    ) -> WriteCounts:
        ac = t.alliance_corporations

        def refresh(alliance_id: int) -> str:
            return refresh_of if isinstance(refresh_of, str) else refresh_of[alliance_id]

        if joins:
            conn.execute(
                self._insert(ac).on_conflict_do_nothing(),
                [{"alliance_id": a, "corporation_id": c, "first_seen_at": now} for a, c in joins],
            )
        if leaves:
            conn.execute(
                ac.delete().where(
                    ac.c.alliance_id == sa.bindparam("a"), ac.c.corporation_id == sa.bindparam("c")
                ),
                [{"a": a, "c": c} for a, c in leaves],
            )
        history = [
            {
                "alliance_id": a,
                "corporation_id": c,
                "event": event,
                "observed_at": now,
                "refresh_id": refresh(a),
            }
            for event, pairs in (("joined", joins), ("left", leaves))
            for a, c in pairs
        ]
        if history:
            conn.execute(t.membership_history.insert(), history)
        return WriteCounts(joined=len(joins), left=len(leaves))

    def _sync_rows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: list[dict[str, Any]],
        now: dt.datetime,
        *,
        keep_if_absent: frozenset[str],
    ) -> WriteCounts:
        counts = WriteCounts()
        if not rows:
            return counts
        fields = [c for c in rows[0] if c != "id"]
        existing: dict[int, sa.Row] = {}
        for chunk in _chunks([r["id"] for r in rows], _CHUNK):
            for row in conn.execute(sa.select(table).where(table.c.id.in_(chunk))):
                existing[row.id] = row
        changed = []
        for row in rows:
            old = existing.get(row["id"])
            if old is None:
                changed.append({**row, "created_at": now, "updated_at": now})
                counts.created += 1
                continue
            merged = {
                f: getattr(old, f) if f in keep_if_absent and row[f] is None else row[f] for f in fields
            }
            if merged.get("closed_at") is not None and old.closed_at is not None:
                merged["closed_at"] = old.closed_at  # keep when it was first seen closed
            if all(merged[f] == getattr(old, f) for f in fields):
                counts.unchanged += 1
                continue
            changed.append({"id": row["id"], **merged, "created_at": old.created_at, "updated_at": now})
            counts.updated += 1
        if changed:
            stmt = self._insert(table)
            set_ = {f: stmt.excluded[f] for f in fields}
            set_["updated_at"] = stmt.excluded.updated_at  # created_at is never overwritten
            conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=set_), changed)
        return counts

    def _close(
        self,
        conn: sa.Connection,
        table: sa.Table,
        ids: list[int],
        now: dt.datetime,
        clear: tuple[str, ...] = (),
    ) -> int:
        closed = 0
        values = {"closed_at": now, "updated_at": now, **{c: None for c in clear}}
        for chunk in _chunks(sorted(ids), _CHUNK):
            result = conn.execute(
                table.update().where(table.c.id.in_(chunk), table.c.closed_at.is_(None)).values(**values)
            )
            closed += result.rowcount
        return closed

    # -- step-level work -----------------------------------------------------------------------

    def close_unlisted_alliances(self, listed: Iterable[int]) -> tuple[int, int]:
        """Set `closed_at` on alliances ESI stopped listing and clear it on those listed again.

        Returns (closed, reopened). Reopened rows are refreshed by their detail job anyway; clearing
        here keeps the table right even when that job fails.
        """
        listed_set = set(listed)
        now = utcnow()
        a = t.alliances
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(a.c.id, a.c.closed_at)).all()
            to_close = [r.id for r in rows if r.id not in listed_set and r.closed_at is None]
            to_open = [r.id for r in rows if r.id in listed_set and r.closed_at is not None]
            closed = self._close(conn, a, to_close, now, clear=("executor_corporation_id",))
            for chunk in _chunks(to_open, _CHUNK):
                conn.execute(a.update().where(a.c.id.in_(chunk)).values(closed_at=None, updated_at=now))
        return closed, len(to_open)

    def open_alliance_ids(self) -> list[int]:
        a = t.alliances
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.select(a.c.id).where(a.c.closed_at.is_(None)).order_by(a.c.id)))

    def drop_memberships_of_closed_alliances(self, refresh_id: str) -> int:
        """Closed alliances have no members: remove what is left of their lists, as leaves."""
        a, ac = t.alliances, t.alliance_corporations
        now = utcnow()
        with self.engine.begin() as conn:
            leaves = conn.execute(
                sa.select(ac.c.alliance_id, ac.c.corporation_id)
                .join(a, a.c.id == ac.c.alliance_id, isouter=True)
                .where(sa.or_(a.c.id.is_(None), a.c.closed_at.is_not(None)))
            ).all()
            pairs = [(r.alliance_id, r.corporation_id) for r in leaves]
            self._record_membership_changes(conn, [], pairs, refresh_id, now)
        return len(pairs)

    def corporation_ids_to_refresh(self) -> tuple[list[int], list[int]]:
        """(member corporations, leavers): every listed member, plus every open corporation whose
        stored `alliance_id` is no longer backed by a membership row."""
        c, ac = t.corporations, t.alliance_corporations
        backed = sa.exists().where(ac.c.alliance_id == c.c.alliance_id, ac.c.corporation_id == c.c.id)
        with self.engine.connect() as conn:
            members = set(conn.scalars(sa.select(ac.c.corporation_id).distinct()))
            leavers = set(
                conn.scalars(
                    sa.select(c.c.id).where(c.c.alliance_id.is_not(None), c.c.closed_at.is_(None), ~backed)
                )
            )
        return sorted(members), sorted(leavers - members)

    def write_alliance_snapshot(self, day: dt.date) -> int:
        """Replace `day`'s alliance snapshot, computed in SQL from current memberships, and carry the
        same figures into `alliances.member_count` / `corporation_count`."""
        a, ac, c, s = t.alliances, t.alliance_corporations, t.corporations, t.alliance_snapshots
        now = utcnow()
        members = sa.func.coalesce(sa.func.sum(c.c.member_count), 0)
        corps = sa.func.count(c.c.id)
        figures = (
            sa.select(
                a.c.id.label("alliance_id"), members.label("member_count"), corps.label("corporation_count")
            )
            .select_from(a)
            .join(ac, ac.c.alliance_id == a.c.id, isouter=True)
            .join(c, sa.and_(c.c.id == ac.c.corporation_id, c.c.closed_at.is_(None)), isouter=True)
            .where(a.c.closed_at.is_(None))
            .group_by(a.c.id)
        )
        with self.engine.begin() as conn:
            conn.execute(s.delete().where(s.c.snapshot_date == day))
            sub = figures.subquery()
            conn.execute(
                s.insert().from_select(
                    ["alliance_id", "snapshot_date", "member_count", "corporation_count", "created_at"],
                    sa.select(
                        sub.c.alliance_id,
                        sa.literal(day, sa.Date),
                        sub.c.member_count,
                        sub.c.corporation_count,
                        sa.literal(now, t.UTC_TIME),
                    ),
                )
            )

            def latest(column: sa.Column) -> sa.ScalarSelect:
                return (
                    sa.select(column)
                    .where(s.c.alliance_id == a.c.id, s.c.snapshot_date == day)
                    .scalar_subquery()
                )

            member_count, corporation_count = latest(s.c.member_count), latest(s.c.corporation_count)
            conn.execute(
                a.update()
                .where(
                    a.c.closed_at.is_(None),
                    sa.or_(a.c.member_count != member_count, a.c.corporation_count != corporation_count),
                )
                .values(member_count=member_count, corporation_count=corporation_count, updated_at=now)
            )
            conn.execute(
                a.update()
                .where(a.c.closed_at.is_not(None), sa.or_(a.c.member_count != 0, a.c.corporation_count != 0))
                .values(member_count=0, corporation_count=0, updated_at=now)
            )
            return conn.scalar(sa.select(sa.func.count()).where(s.c.snapshot_date == day))

    def write_corporation_snapshot(self, day: dt.date) -> int:
        """Replace `day`'s corporation snapshot: one row per corporation that is not closed."""
        c, s = t.corporations, t.corporation_snapshots
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(s.delete().where(s.c.snapshot_date == day))
            conn.execute(
                s.insert().from_select(
                    ["corporation_id", "snapshot_date", "member_count", "created_at"],
                    sa.select(
                        c.c.id, sa.literal(day, sa.Date), c.c.member_count, sa.literal(now, t.UTC_TIME)
                    ).where(c.c.closed_at.is_(None)),
                )
            )
            return conn.scalar(sa.select(sa.func.count()).where(s.c.snapshot_date == day))

    # -- helpers -------------------------------------------------------------------------------

    def _insert(self, table: sa.Table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def row_counts(self) -> dict[str, int]:
        """Rows in each table the killboard reads."""
        tables = (
            t.alliances,
            t.alliance_corporations,
            t.corporations,
            t.alliance_snapshots,
            t.corporation_snapshots,
        )
        with self.engine.connect() as conn:
            return {
                table.name: conn.scalar(sa.select(sa.func.count()).select_from(table)) for table in tables
            }

    def scalar(self, query: sa.Executable) -> Any:
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def rows(self, query: sa.Executable) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(query))


_WRITERS = {
    JobKind.ALLIANCE: Storage._write_alliances,
    JobKind.ALLIANCE_CORPORATIONS: Storage._write_memberships,
    JobKind.CORPORATION: Storage._write_corporations,
}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
