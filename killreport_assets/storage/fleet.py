"""The ESI budget of the whole fleet: every process that shares this database (the Dagster run and
all workers, which share one egress IP) books its request slots on one timeline per ESI and says
that it is sending, so that together they keep `KILLREPORT_ESI_MAX_RPS` and ESI's error budget.

Times are epoch seconds from each process's clock: processes on one host (or NTP-synced hosts)
agree on them to well under one slot.
"""

from __future__ import annotations

import socket

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import insert, upsert

_budget = tables.esi_budget
_fleet = tables.esi_fleet


class EsiFleet:
    def __init__(self, engine: sa.Engine, statements: sa.Engine | None = None) -> None:
        """`statements`: the autocommit pool bookings go through (default: `engine`)."""
        self._engine = engine
        self._statements = statements or engine

    def book(self, budget: str, count: int, interval: float, now: float) -> float:
        """Book `count` send slots `interval` seconds apart on `budget`'s timeline, none before `now`;
        return the first one. One atomic statement (no transaction around it), so concurrent
        bookings never overlap."""
        span = count * interval
        next_slot = _budget.c.next_slot
        booked = (
            sa.update(_budget)
            .where(_budget.c.budget == budget)
            .values(next_slot=sa.case((next_slot > now, next_slot), else_=now) + span)
            .returning(_budget.c.next_slot)
        )
        with self._statements.begin() as conn:
            end = conn.execute(booked).scalar()
            if end is None:  # the first booking for this ESI
                conn.execute(
                    insert(conn, _budget).values(budget=budget, next_slot=0.0).on_conflict_do_nothing()
                )
                end = conn.execute(booked).scalar_one()
        return end - span

    def heartbeat(self, budget: str, member: str, now: float, within: float) -> int:
        """`member` is sending to `budget`; return how many members (itself included) have said so
        in the last `within` seconds."""
        with self._engine.begin() as conn:
            upsert(conn, _fleet, [{"member": member, "budget": budget, "heartbeat_at": now}], ["member"])
            return max(1, conn.execute(_alive(budget, now, within)).scalar_one())

    def leave(self, member: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(_fleet).where(_fleet.c.member == member))

    def members(self, budget: str, now: float, within: float) -> int:
        """How many processes have sent to `budget` in the last `within` seconds."""
        with self._engine.connect() as conn:
            return conn.execute(_alive(budget, now, within)).scalar_one()

    def share(self, budget: str, role: str) -> SharedEsiBudget:
        """The handle one process (`role`, e.g. "killreport worker 1234") uses for `budget`."""
        return SharedEsiBudget(self, budget, f"{role} on {socket.gethostname()}")


def _alive(budget: str, now: float, within: float) -> sa.Select:
    return sa.select(sa.func.count()).where(_fleet.c.budget == budget, _fleet.c.heartbeat_at > now - within)


class SharedEsiBudget:
    """One process's view of a shared budget: what `EsiGovernor.share_budget` takes."""

    def __init__(self, fleet: EsiFleet, budget: str, member: str) -> None:
        self._fleet, self.budget, self.member = fleet, budget, member

    def book(self, count: int, interval: float, now: float) -> float:
        return self._fleet.book(self.budget, count, interval, now)

    def heartbeat(self, now: float, within: float) -> int:
        return self._fleet.heartbeat(self.budget, self.member, now, within)

    def leave(self) -> None:
        self._fleet.leave(self.member)
