"""Step leases: at most one refresh runs an ESI step at a time against one database, and jobs of a
refresh that no longer runs the step are told apart from live ones.

Whoever runs a step (any entry point: the schedule, the UI, `dagster asset materialize`, any
instance configuration) takes the step's lease, renews it while it waits, and gives it back when
the step ends. A lease whose heartbeat is older than its time-to-live belongs to a process that
died (an out-of-memory kill, a lost host): the next refresh takes it over. Workers admit a job only
while its refresh holds the step's lease, so the queued jobs of a dead run are skipped, not worked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import insert, utcnow

_leases = tables.step_leases


@dataclass(frozen=True)
class Lease:
    step: str
    refresh_id: str
    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime

    def alive(self, ttl: float, now: dt.datetime | None = None) -> bool:
        return (now or utcnow()) - self.heartbeat_at <= dt.timedelta(seconds=ttl)

    def describe(self) -> str:
        return (
            f"refresh {self.refresh_id} ({self.holder}), running since {self.acquired_at:%Y-%m-%d %H:%M:%S} "
            f"UTC, last heartbeat {self.heartbeat_at:%H:%M:%S} UTC"
        )


class StepLeases:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def acquire(self, step: str, refresh_id: str, holder: str, ttl: float) -> tuple[Lease, Lease | None]:
        """Take `step` for `refresh_id` unless another refresh holds it and is alive.

        Returns (the lease as it now stands, the dead lease taken over if any). The lease returned
        belongs to someone else when the step is busy. Atomic: of two refreshes racing for a free
        step, exactly one wins."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=ttl)
        row = {
            "step": step,
            "refresh_id": refresh_id,
            "holder": holder,
            "acquired_at": now,
            "heartbeat_at": now,
        }
        with self._engine.begin() as conn:
            before = self._get(conn, step)
            stmt = insert(conn, _leases)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["step"],
                    set_={
                        "refresh_id": stmt.excluded.refresh_id,
                        "holder": stmt.excluded.holder,
                        # a retried step of the same refresh keeps its start time
                        "acquired_at": sa.case(
                            (_leases.c.refresh_id == stmt.excluded.refresh_id, _leases.c.acquired_at),
                            else_=stmt.excluded.acquired_at,
                        ),
                        "heartbeat_at": stmt.excluded.heartbeat_at,
                    },
                    where=sa.or_(
                        _leases.c.refresh_id == stmt.excluded.refresh_id, _leases.c.heartbeat_at < stale
                    ),
                ),
                row,
            )
            after = self._get(conn, step)
        assert after is not None
        taken_over = (
            before
            if before is not None and before.refresh_id != refresh_id and after.refresh_id == refresh_id
            else None
        )
        return after, taken_over

    def heartbeat(self, step: str, refresh_id: str) -> bool:
        """Renew the lease; False when this refresh no longer holds it (taken over after a long stall)."""
        with self._engine.begin() as conn:
            result = conn.execute(
                _leases.update()
                .where(_leases.c.step == step, _leases.c.refresh_id == refresh_id)
                .values(heartbeat_at=utcnow())
            )
        return result.rowcount == 1

    def release(self, step: str, refresh_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(_leases.delete().where(_leases.c.step == step, _leases.c.refresh_id == refresh_id))

    def current(self) -> dict[str, Lease]:
        """Every step's lease, by step."""
        with self._engine.connect() as conn:
            return {row.step: Lease(**row._mapping) for row in conn.execute(sa.select(_leases))}

    @staticmethod
    def _get(conn: sa.Connection, step: str) -> Lease | None:
        row = conn.execute(sa.select(_leases).where(_leases.c.step == step)).first()
        return None if row is None else Lease(**row._mapping)
