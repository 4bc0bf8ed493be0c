"""`Storage`: the application database, one object per concern.

Thread-safe: every method takes its own connection from the engine's pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from killreport_assets.storage import unit
from killreport_assets.storage.cache import EsiCache
from killreport_assets.storage.database import create_engine, statement_engine
from killreport_assets.storage.fleet import EsiFleet
from killreport_assets.storage.leases import StepLeases
from killreport_assets.storage.ledger import Ledger
from killreport_assets.storage.listing import Listing
from killreport_assets.storage.memberships import Memberships
from killreport_assets.storage.pauses import EsiPauses
from killreport_assets.storage.reports import Reports
from killreport_assets.storage.retention import Retention
from killreport_assets.storage.snapshots import Snapshots
from killreport_assets.storage.unit import Finished, WriteCounts

if TYPE_CHECKING:
    from killreport_assets.esi import EsiClient


class Storage:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._statements = statement_engine(engine)
        self.ledger = Ledger(engine, self._statements)
        self.cache = EsiCache(engine, self._statements)
        self.listing = Listing(engine, self.cache)
        self.memberships = Memberships(engine)
        self.snapshots = Snapshots(engine)
        self.reports = Reports(engine)
        self.leases = StepLeases(engine)
        self.pauses = EsiPauses(engine)
        self.fleet = EsiFleet(engine, self._statements)
        self.retention = Retention(engine)

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Storage:
        return cls(create_engine(url, pool_size=pool_size))

    def coordinate(self, client: EsiClient, role: str) -> None:
        """Make `client` (the process named `role`) one of the fleet on this database: it reports its
        ESI pauses, holds during the outages other processes here find, and books its requests from
        the fleet's one budget (until the client closes)."""
        client.add_pause_listener(self.pauses.reporter(role))
        client.watch_peers(self.pauses.peers(role))
        client.share_budget(self.fleet.share(client.base_url, role))

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._statements is not self.engine:
            self._statements.dispose()

    def apply(self, batch: Sequence[Finished]) -> WriteCounts:
        """Write a batch of finished jobs (data, ledger rows, ESI responses) in one transaction."""
        return unit.apply(self.engine, self.ledger, self.cache, batch)
