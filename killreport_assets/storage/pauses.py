"""ESI pauses as every process last reported them, so that a step waiting on workers in other
processes can tell "ESI is paused (downtime, outage, error limit)" from "nothing is happening"."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable

import sqlalchemy as sa

from killreport_assets.storage import tables
from killreport_assets.storage.sql import upsert, utcnow

_pauses = tables.esi_pauses


class EsiPauses:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def record(self, source: str, reason: str, seconds: float) -> None:
        """`source` holds its ESI requests for `seconds` from now, because of `reason`; 0 ends it."""
        now = utcnow()
        row = {
            "source": source,
            "reason": reason,
            "paused_until": now + dt.timedelta(seconds=max(0.0, seconds)),
            "updated_at": now,
        }
        with self._engine.begin() as conn:
            upsert(conn, _pauses, [row], ["source"])

    def reporter(self, role: str) -> Callable[[str, float], None]:
        """A pause listener for this process, named `role` on this host."""
        source = f"{role} on {socket.gethostname()}"
        return lambda reason, seconds: self.record(source, reason, seconds)

    def active(self, now: dt.datetime | None = None) -> list[tuple[str, str, dt.datetime]]:
        """(source, reason, until) of every pause that has not ended, longest first."""
        query = (
            sa.select(_pauses.c.source, _pauses.c.reason, _pauses.c.paused_until)
            .where(_pauses.c.paused_until > (now or utcnow()))
            .order_by(_pauses.c.paused_until.desc())
        )
        with self._engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]
