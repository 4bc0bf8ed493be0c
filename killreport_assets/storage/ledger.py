"""The refresh ledger: one row per (refresh, step, entity), the only completion signal a step trusts.

Queue lengths say nothing about completion (a job in flight is in no queue); the ledger does: a step
is finished when none of its rows is pending.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import chunks, insert, utcnow

_ledger = tables.refresh_ledger
REFRESH_ID_LENGTH: int = _ledger.c.refresh_id.type.length


class LedgerStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"  # fetched (200) and written
    UNCHANGED = "unchanged"  # 304, or still fresh in the HTTP cache
    GONE = "gone"  # 404: the entity no longer exists
    FAILED = "failed"  # permanent failure after bounded attempts
    WITHDRAWN = "withdrawn"  # its step ended (failed, timed out, cancelled, its run died) before it ran

    @classmethod
    def finished(cls) -> tuple[LedgerStatus, ...]:
        return (cls.DONE, cls.UNCHANGED, cls.GONE, cls.FAILED, cls.WITHDRAWN)


_GOOD = (LedgerStatus.DONE, LedgerStatus.UNCHANGED, LedgerStatus.GONE)


@dataclass(frozen=True)
class LedgerEntry:
    """What happened to one entity in one step of one refresh."""

    refresh_id: str
    step: str
    entity_id: int
    status: LedgerStatus
    attempts: int = 1  # ESI requests this outcome spent, added to what the entity spent before
    http_status: int | None = None  # the last ESI answer; None when served from the cache
    error: str | None = None


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
        """Entities that ended without an answer: failed, or withdrawn from this refresh."""
        return self.by_status.get(LedgerStatus.FAILED, 0) + self.by_status.get(LedgerStatus.WITHDRAWN, 0)


@dataclass(frozen=True)
class StepSpan:
    """When a step's first row was recorded and its last one finished."""

    step: str
    started_at: dt.datetime
    last_update_at: dt.datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.last_update_at - self.started_at).total_seconds())


class Ledger:
    def __init__(self, engine: sa.Engine, statements: sa.Engine | None = None) -> None:
        """`statements`: the autocommit pool for single-statement reads (default: `engine`)."""
        self._engine = engine
        self._reads = statements or engine

    def add_pending(self, refresh_id: str, step: str, entity_ids: Iterable[int]) -> None:
        """Record a step's entities as pending; rows a retried step already finished stay finished,
        rows its earlier attempt withdrew are pending again."""
        now = utcnow()
        rows = [
            {
                "refresh_id": refresh_id,
                "step": step,
                "entity_id": entity_id,
                "status": LedgerStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for entity_id in sorted(set(entity_ids))
        ]
        with self._engine.begin() as conn:
            for chunk in chunks(rows, 2000):
                stmt = insert(conn, _ledger)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["refresh_id", "step", "entity_id"],
                        set_={"status": stmt.excluded.status, "updated_at": stmt.excluded.updated_at},
                        where=_ledger.c.status == LedgerStatus.WITHDRAWN.value,
                    ),
                    chunk,
                )

    def withdraw(self, refresh_id: str, step: str, reason: str) -> int:
        """Mark the step's pending entities withdrawn with `reason` (workers then skip their jobs);
        returns how many."""
        with self._engine.begin() as conn:
            result = conn.execute(
                _ledger.update()
                .where(
                    _ledger.c.refresh_id == refresh_id,
                    _ledger.c.step == step,
                    _ledger.c.status == LedgerStatus.PENDING.value,
                )
                .values(status=LedgerStatus.WITHDRAWN.value, last_error=reason[:2000], updated_at=utcnow())
            )
        return result.rowcount

    def state(self, refresh_id: str, step: str, entity_id: int) -> tuple[LedgerStatus, int] | None:
        """(status, ESI requests spent so far) of one entity in one step, None if it has no row
        (an on-demand job)."""
        query = sa.select(_ledger.c.status, _ledger.c.attempts).where(
            _ledger.c.refresh_id == refresh_id, _ledger.c.step == step, _ledger.c.entity_id == entity_id
        )
        with self._reads.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (LedgerStatus(row.status), row.attempts)

    def spend(self, refresh_id: str, step: str, entity_id: int, requests: int) -> None:
        """Count ESI requests of an attempt that will be retried (a finished one counts its own)."""
        if requests <= 0:
            return
        with self._engine.begin() as conn:
            conn.execute(
                _ledger.update()
                .where(
                    _ledger.c.refresh_id == refresh_id,
                    _ledger.c.step == step,
                    _ledger.c.entity_id == entity_id,
                )
                .values(attempts=_ledger.c.attempts + requests)
            )

    def write(self, conn: sa.Connection, entries: Sequence[LedgerEntry], now: dt.datetime) -> None:
        """Record finished entities inside the caller's transaction (the last entry per entity wins)."""
        latest = {(e.refresh_id, e.step, e.entity_id): e for e in entries}
        rows = [
            {
                "refresh_id": e.refresh_id,
                "step": e.step,
                "entity_id": e.entity_id,
                "status": e.status.value,
                "attempts": e.attempts,
                "http_status": e.http_status,
                "last_error": e.error,
                "updated_at": now,
                "created_at": now,
            }
            for _, e in sorted(latest.items())
        ]
        stmt = insert(conn, _ledger)
        changed = ("status", "http_status", "last_error", "updated_at")
        # A row that finished well stays so within its refresh: a late duplicate delivery that
        # failed (or a retried step's pending row) never turns "done" into something worse.
        # (Plain comparisons: an IN list cannot be expanded in an executemany.)
        replaceable = sa.or_(
            *(
                _ledger.c.status == sa.literal(s.value)
                for s in (LedgerStatus.PENDING, LedgerStatus.FAILED, LedgerStatus.WITHDRAWN)
            ),
            *(stmt.excluded.status == sa.literal(s.value) for s in _GOOD),
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["refresh_id", "step", "entity_id"],
                set_={
                    **{column: stmt.excluded[column] for column in changed},
                    "attempts": _ledger.c.attempts + stmt.excluded.attempts,
                },
                where=replaceable,
            ),
            rows,
        )

    def pending_ids(self, refresh_id: str, step: str) -> list[int]:
        return self._ids(refresh_id, step, LedgerStatus.PENDING)

    def failed_ids(self, refresh_id: str, step: str) -> list[int]:
        return self._ids(refresh_id, step, LedgerStatus.FAILED)

    def pulse(self, refresh_id: str, step: str) -> tuple[bool, dt.datetime | None]:
        """(whether any entity is still pending, when the step's ledger last changed): what a step
        polls, by two index lookups, so a poll costs the same at any universe size."""
        of_step = (_ledger.c.refresh_id == refresh_id, _ledger.c.step == step)
        pending = sa.exists().where(*of_step, _ledger.c.status == LedgerStatus.PENDING.value)
        changed = sa.select(sa.func.max(_ledger.c.updated_at)).where(*of_step).scalar_subquery()
        with self._reads.connect() as conn:
            any_pending, changed_at = conn.execute(sa.select(pending, changed)).one()
        return bool(any_pending), changed_at

    def progress(self, refresh_id: str, step: str) -> StepProgress:
        query = (
            sa.select(_ledger.c.status, _ledger.c.http_status, sa.func.count())
            .where(_ledger.c.refresh_id == refresh_id, _ledger.c.step == step)
            .group_by(_ledger.c.status, _ledger.c.http_status)
        )
        by_status: Counter[str] = Counter()
        by_http: Counter[str] = Counter()
        with self._engine.connect() as conn:
            for status, http_status, count in conn.execute(query):
                by_status[status] += count
                if status != LedgerStatus.PENDING:
                    by_http["cache" if http_status is None else str(http_status)] += count
        return StepProgress(
            total=sum(by_status.values()), by_status=dict(by_status), by_http_status=dict(by_http)
        )

    def failures(self, refresh_id: str, step: str) -> list[tuple[int, str | None]]:
        """(entity id, last error) of every entity that failed permanently or was withdrawn, by id."""
        query = (
            sa.select(_ledger.c.entity_id, _ledger.c.last_error)
            .where(
                _ledger.c.refresh_id == refresh_id,
                _ledger.c.step == step,
                _ledger.c.status.in_([LedgerStatus.FAILED.value, LedgerStatus.WITHDRAWN.value]),
            )
            .order_by(_ledger.c.entity_id)
        )
        with self._engine.connect() as conn:
            return [(row.entity_id, row.last_error) for row in conn.execute(query)]

    def step_spans(self, refresh_id: str) -> list[StepSpan]:
        """The steps one refresh has reached, with their first and last ledger times."""
        query = (
            sa.select(_ledger.c.step, sa.func.min(_ledger.c.created_at), sa.func.max(_ledger.c.updated_at))
            .where(_ledger.c.refresh_id == refresh_id)
            .group_by(_ledger.c.step)
        )
        with self._engine.connect() as conn:
            return [StepSpan(step, first, last) for step, first, last in conn.execute(query)]

    def latest_refresh(self, *, step: str | None = None, excluding_prefix: str | None = None) -> str | None:
        """The most recently started refresh (that reached `step`; whose id lacks `excluding_prefix`)."""
        query = sa.select(_ledger.c.refresh_id).order_by(_ledger.c.created_at.desc()).limit(1)
        if step is not None:
            query = query.where(_ledger.c.step == step)
        if excluding_prefix is not None:
            query = query.where(~_ledger.c.refresh_id.startswith(excluding_prefix))
        with self._engine.connect() as conn:
            return conn.scalar(query)

    def _ids(self, refresh_id: str, step: str, status: LedgerStatus) -> list[int]:
        query = (
            sa.select(_ledger.c.entity_id)
            .where(
                _ledger.c.refresh_id == refresh_id, _ledger.c.step == step, _ledger.c.status == status.value
            )
            .order_by(_ledger.c.entity_id)
        )
        with self._engine.connect() as conn:
            return list(conn.scalars(query))
