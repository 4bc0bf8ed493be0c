"""Shared fixtures: throw-away databases on the real PostgreSQL (and SQLite), and the ESI simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from killreport_assets_tests.databases import database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty application database, once on SQLite and once on the local PostgreSQL."""
    with database(request.param, tmp_path) as url:
        yield url
