"""Storage: the application database. The only package that knows its tables or writes SQL.

store.Storage      one object per concern, below
unit               the unit of work: a batch's data, ledger rows and ESI responses, one transaction
entities           entity tables: compare-then-upsert, close on 404
memberships        alliance member lists and their join/leave history
listing            kinds ESI lists (alliances): close the unlisted
ledger             per-entity progress of every refresh step
leases             one refresh per step; whose jobs are still live
pauses             ESI pauses reported by every process
snapshots          dated size snapshots and their checks' queries
cache              the ESI HTTP cache (read by the client, written by the unit of work)
reports            figures for materialization metadata
tables, database   schema, engines and migrations
"""

from killreport_assets.storage.database import DatabaseError, create_engine, is_disconnect, migrate
from killreport_assets.storage.entities import EntityTable
from killreport_assets.storage.ledger import (
    REFRESH_ID_LENGTH,
    LedgerEntry,
    LedgerStatus,
    StepProgress,
    StepSpan,
)
from killreport_assets.storage.listing import ListingShrank
from killreport_assets.storage.memberships import AllianceMembers
from killreport_assets.storage.reports import ColumnInfo, columns
from killreport_assets.storage.store import Storage
from killreport_assets.storage.unit import Finished, Store, WriteCounts

__all__ = [
    "REFRESH_ID_LENGTH",
    "AllianceMembers",
    "ColumnInfo",
    "DatabaseError",
    "EntityTable",
    "Finished",
    "LedgerEntry",
    "LedgerStatus",
    "ListingShrank",
    "StepProgress",
    "StepSpan",
    "Storage",
    "Store",
    "WriteCounts",
    "columns",
    "create_engine",
    "is_disconnect",
    "migrate",
]
