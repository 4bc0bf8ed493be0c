"""Storage: the application database (tables, migrations, bulk writes, the ledger, the ESI cache)."""

from killreport_assets.storage.database import DatabaseError, create_engine, migrate
from killreport_assets.storage.repository import StepProgress, Storage, WriteCounts

__all__ = ["DatabaseError", "StepProgress", "Storage", "WriteCounts", "create_engine", "migrate"]
