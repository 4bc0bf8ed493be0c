"""Engines and schema migrations for the application database (PostgreSQL or SQLite).

Migrations run automatically and idempotently whenever a process opens the database, and by
`killreport migrate`. Concurrent starters (the Dagster run and several workers) serialise on a
PostgreSQL advisory lock so that only one of them upgrades the schema.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from killreport_assets.envvars import redact_url
from killreport_assets.errors import DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_KEY = 0x6B696C6C  # "kill": any constant shared by every process of this program

# A pooled connection idle longer than this is pinged before use (see `_ping_when_idle`).
IDLE_PING_SECONDS = 1.0
# Connections of the autocommit pool for the hot path's single statements (`statement_engine`).
STATEMENT_CONNECTIONS = 10

_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def sqlalchemy_url(url: str) -> str:
    """Accept plain libpq-style URLs: SQLAlchemy 2.1 maps bare `postgresql://` to psycopg 3, which we
    do not ship, so choose the psycopg2 driver explicitly."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, pool_size: int = 10, migrated: bool = True) -> sa.Engine:
    """An engine for `url` with the schema migrated to the latest revision (`migrated=False`: as it
    is, for commands that only look)."""
    engine = _engine(url, pool_size=pool_size)
    if not migrated:
        return engine
    with _migrated_lock:
        if url not in _migrated:
            migrate(engine)
            _migrated.add(url)
    return engine


def statement_engine(engine: sa.Engine) -> sa.Engine:
    """A pool of its own, in autocommit, for the single statements of the hot path (a job's ledger
    and cache reads, the fleet's bookings): no BEGIN before and no ROLLBACK after each, and no
    isolation-level switch on every checkout as `execution_options(isolation_level=...)` on the
    shared pool costs (measured: 190-240 us a read against 320-430 us). SQLite: `engine` itself
    (one file, and its pool is not where the time goes).

    At most `STATEMENT_CONNECTIONS` connections however many threads share it: a statement holds
    one for well under a millisecond, and the job threads of a process (up to 50 each) all asking
    at a step's start would otherwise open one each, which four workers and the run together
    would take past PostgreSQL's default of 100 connections."""
    if engine.dialect.name != "postgresql":
        return engine
    url = engine.url.render_as_string(hide_password=False)
    size = min(engine.pool.size(), STATEMENT_CONNECTIONS)  # type: ignore[attr-defined]
    return _engine(url, pool_size=size, max_overflow=0, autocommit=True)


def _engine(
    url: str, *, pool_size: int, max_overflow: int | None = None, autocommit: bool = False
) -> sa.Engine:
    real_url = sqlalchemy_url(url)
    if real_url.startswith("sqlite"):
        path = sa.engine.make_url(real_url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(real_url, connect_args={"timeout": 60, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = sa.create_engine(
        real_url,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        # SQLAlchemy's multi-row INSERT does not apply to upserts (ON CONFLICT): without this,
        # psycopg2 sends a batch's upserts one statement and one round trip per row.
        executemany_mode="values_plus_batch",
        executemany_batch_page_size=500,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={
            "connect_timeout": 10,
            "application_name": "killreport_assets",
            # A link that dies without a reset (a network partition) fails its queries within about
            # a minute instead of hanging the thread until the kernel's two-hour keepalive.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        },
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection before use only when it sat idle for `IDLE_PING_SECONDS`.

    `pool_pre_ping` pings on every checkout: on the hot path (two reads per entity, a connection
    back in the pool milliseconds earlier) that doubled the round trips to PostgreSQL. A connection
    idle for a while is the one a database restart or a dropped link may have killed; a busy one
    that dies fails its statement, which the steps, transports and writer treat as a disconnect
    (SQLAlchemy then renews the whole pool)."""

    @sa.event.listens_for(engine, "checkin")
    def returned(_dbapi_connection: object, record: sa.pool.ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def taken(dbapi_connection: object, record: sa.pool.ConnectionPoolEntry, _proxy: object) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.DisconnectionError(str(exc)) from exc  # the pool reconnects and retries
            raise


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the UI and checks read while a refresh writes; NORMAL sync is durable enough with WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(engine: sa.Engine) -> str | None:
    """Upgrade the schema to the newest revision; returns the revision now in place."""
    config = _alembic_config()
    with _opened(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        if current_revision(connection) != head_revision():
            command.upgrade(config, "head")
        return current_revision(connection)


def revision_in_place(engine: sa.Engine) -> str | None:
    """The schema revision of the database (None: no schema yet); changes nothing."""
    with _opened(engine), engine.connect() as connection:
        return current_revision(connection)


def upgrade_sql(engine: sa.Engine) -> str:
    """The SQL `migrate` would run on this database, from its revision to the newest, for review
    (Alembic's offline mode, in the database's dialect); changes nothing."""
    start = revision_in_place(engine)
    if start == head_revision():
        return ""
    buffer = io.StringIO()
    config = _alembic_config(buffer)
    config.attributes["offline_url"] = engine.url
    command.upgrade(config, f"{start or 'base'}:head", sql=True)
    return buffer.getvalue()


def _alembic_config(output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@contextmanager
def _opened(engine: sa.Engine) -> Iterator[None]:
    """Turn "cannot connect" into one `DatabaseError` line naming the database (password hidden)."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        reason = " ".join(str(exc.orig).split())  # the driver's message spans lines
        raise DatabaseError(
            f"cannot open the application database {redact_url(str(engine.url))}: {reason}. "
            "Check KILLREPORT_DATABASE_URL and that the server is running."
        ) from exc


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def is_disconnect(exc: BaseException) -> bool:
    """The database is unreachable (not: it refused this data). A pool that found no free connection
    in time (`sa.exc.TimeoutError`) counts: its connections are held by statements the database
    stopped answering."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError)
