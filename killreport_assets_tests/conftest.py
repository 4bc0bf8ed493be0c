"""Shared fixtures: throw-away databases on the real PostgreSQL (and SQLite), and the ESI simulator."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from killreport_assets.esi import governor
from killreport_assets_tests.databases import database
from killreport_assets_tests.rabbit_support import TEST_ENV, RabbitStack
from killreport_assets_tests.reliability import ROWS


def pytest_sessionstart(session: pytest.Session) -> None:
    """docs/reliability.md shows one run: drop the scenario rows of earlier sessions."""
    shutil.rmtree(ROWS, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_esi_governors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no process-wide ESI governor. They are keyed by ESI's address, and a
    simulator's loopback port can be one an earlier test's simulator had: without this, a test
    would inherit that test's limits (a downtime window it never set) and its circuit state."""
    monkeypatch.setattr(governor, "_shared", {})


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty application database, once on SQLite and once on the local PostgreSQL."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RabbitStack]:
    """RabbitMQ mode: a vhost and a database of the test's own, with the test settings in the environment."""
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    with RabbitStack(tmp_path) as stack:
        yield stack
