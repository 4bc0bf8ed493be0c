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
        source = _source(role)
        return lambda reason, seconds: self.record(source, reason, seconds)

    def peers(self, role: str) -> Callable[[], tuple[str, float] | None]:
        """For the process named `role`: the longest outage, downtime or error-limit pause another
        process on this host reports, as (reason, seconds left), or None."""
        source = _source(role)
        host = source.rsplit(" on ", 1)[1]

        def held() -> tuple[str, float] | None:
            now = utcnow()
            for other, reason, until in self.active(now):
                if other != source and other.endswith(f" on {host}") and reason in _SHARED_REASONS:
                    return reason, (until - now).total_seconds()
            return None

        return held

    def active(self, now: dt.datetime | None = None) -> list[tuple[str, str, dt.datetime]]:
        """(source, reason, until) of every pause that has not ended, longest first."""
        query = (
            sa.select(_pauses.c.source, _pauses.c.reason, _pauses.c.paused_until)
            .where(_pauses.c.paused_until > (now or utcnow()))
            .order_by(_pauses.c.paused_until.desc())
        )
        with self._engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


# Pauses that hold for the whole IP, so for every process on the host (a 429 is per route group).
_SHARED_REASONS = frozenset({"outage", "downtime", "error_limited"})


def _source(role: str) -> str:
    return f"{role} on {socket.gethostname()}"
