"""Reading the application database in tests, as the killboard would: plain queries on its tables."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from killreport_assets.storage import Storage


def rows(storage: Storage, query: sa.Executable) -> list[sa.Row]:
    with storage.engine.connect() as conn:
        return list(conn.execute(query))


def scalar(storage: Storage, query: sa.Executable) -> Any:
    with storage.engine.connect() as conn:
        return conn.scalar(query)
