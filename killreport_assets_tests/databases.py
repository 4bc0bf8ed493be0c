"""Throw-away application databases for tests: a fresh PostgreSQL database or SQLite file each."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

POSTGRES_ADMIN_URL = os.environ.get(
    "KILLREPORT_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a uniquely named database on the local server; drop it afterwards."""
    name = f"killreport_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield str(
            sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'killreport.db'}"


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        with sqlite_database(folder) as url:
            yield url
