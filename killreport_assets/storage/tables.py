"""The database schema: the contract's tables plus history, the refresh ledger and the ESI cache.

One SQLAlchemy Core metadata serves PostgreSQL (production) and SQLite (embedded default). Alembic
migrations in `migrations/` create and evolve it; this module is what the code reads and writes.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""64-bit IDs; SQLite's INTEGER is already 64-bit and only INTEGER PRIMARY KEY is a rowid alias."""


class UtcDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in and out on both dialects (SQLite would otherwise hand back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware UTC")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


UTC_TIME = UtcDateTime()


def _entity_table(name: str, *columns: sa.Column | sa.Index) -> sa.Table:
    """A table of ESI entities (what `storage.entities.EntityTable` writes): the entity's id, name and
    ticker, its own `columns`, and when its row was created, last changed and closed (never deleted)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("ticker", sa.Text, nullable=False),
        *(c for c in columns if isinstance(c, sa.Column)),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("closed_at", UTC_TIME),
        *(c for c in columns if isinstance(c, sa.Index)),
    )


alliances = _entity_table(
    "alliances",
    sa.Column("date_founded", UTC_TIME),
    sa.Column("creator_corporation_id", ID),
    sa.Column("creator_id", ID),
    sa.Column("executor_corporation_id", ID),
    sa.Column("faction_id", ID),
    sa.Column("corporation_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("member_count", sa.BigInteger, nullable=False, server_default="0"),
)
corporations = _entity_table(
    "corporations",
    sa.Column("member_count", sa.BigInteger, nullable=False),
    sa.Column("ceo_id", ID),
    sa.Column("creator_id", ID),
    sa.Column("date_founded", UTC_TIME),
    sa.Column("description", sa.Text),
    sa.Column("alliance_id", ID),
    sa.Column("faction_id", ID),
    sa.Column("home_station_id", ID),
    sa.Column("shares", sa.BigInteger),
    sa.Column("tax_rate", sa.Float, nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("war_eligible", sa.Boolean),
    sa.Column("confirmed_at", UTC_TIME),  # when ESI last confirmed the row (200, 304, or fresh in cache)
    sa.Index("ix_corporations_alliance_id", "alliance_id"),
    sa.Index("ix_corporations_confirmed_at", "confirmed_at"),
)

alliance_corporations = sa.Table(
    "alliance_corporations",
    metadata,
    sa.Column("alliance_id", ID, primary_key=True, autoincrement=False),
    sa.Column("corporation_id", ID, primary_key=True, autoincrement=False),
    sa.Column("first_seen_at", UTC_TIME, nullable=False),
    sa.Index("ix_alliance_corporations_corporation_id", "corporation_id"),
)

membership_history = sa.Table(
    "alliance_membership_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alliance_id", ID, nullable=False),
    sa.Column("corporation_id", ID, nullable=False),
    sa.Column("event", sa.String(8), nullable=False),  # 'joined' | 'left'
    sa.Column("observed_at", UTC_TIME, nullable=False),
    sa.Column("refresh_id", sa.String(64), nullable=False),
    sa.Index("ix_alliance_membership_history_corporation", "corporation_id", "observed_at"),
    sa.Index("ix_alliance_membership_history_alliance", "alliance_id", "observed_at"),
)


def _snapshot_table(name: str, entity: str, *figures: sa.Column) -> sa.Table:
    """One row per entity and UTC date: its figures as a snapshot taken that day recorded them."""
    return sa.Table(
        name,
        metadata,
        sa.Column(f"{entity}_id", ID, primary_key=True, autoincrement=False),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        *figures,
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Index(f"ix_{name}_date", "snapshot_date"),
    )


alliance_snapshots = _snapshot_table(
    "alliance_snapshots",
    "alliance",
    sa.Column("member_count", sa.BigInteger, nullable=False),
    sa.Column("corporation_count", sa.Integer, nullable=False),
)
corporation_snapshots = _snapshot_table(
    "corporation_snapshots",
    "corporation",
    sa.Column("member_count", sa.BigInteger, nullable=False),
    sa.Column("confirmed_at", UTC_TIME),  # when ESI confirmed that member count
)

# What each snapshot is of: its table, its id column, and the entity table it snapshots.
SNAPSHOTS = {
    "alliance": (alliance_snapshots, "alliance_id", alliances),
    "corporation": (corporation_snapshots, "corporation_id", corporations),
}

refresh_ledger = sa.Table(
    "refresh_ledger",
    metadata,
    sa.Column("refresh_id", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(32), primary_key=True),
    sa.Column("entity_id", ID, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(10), nullable=False),  # see jobs.LedgerStatus
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("http_status", sa.Integer),  # last ESI answer: 200, 304, 404, 5xx; NULL = served from cache
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Index("ix_refresh_ledger_status", "refresh_id", "step", "status"),
    sa.Index("ix_refresh_ledger_created_at", "created_at"),  # the latest refresh; retention
    sa.Index("ix_refresh_ledger_updated_at", "refresh_id", "step", "updated_at"),  # a step's poll
)

esi_cache = sa.Table(
    "esi_cache",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("expires_at", UTC_TIME, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Index("ix_esi_cache_updated_at", "updated_at"),  # retention
)

step_leases = sa.Table(
    "step_leases",
    metadata,
    # One row per ESI step being run: the refresh that may fetch for it, and that it is still alive.
    sa.Column("step", sa.String(32), primary_key=True),
    sa.Column("refresh_id", sa.String(64), nullable=False),
    sa.Column("holder", sa.Text, nullable=False),  # who runs it (run id, host, pid), for messages
    sa.Column("acquired_at", UTC_TIME, nullable=False),
    sa.Column("heartbeat_at", UTC_TIME, nullable=False),
)

esi_pauses = sa.Table(
    "esi_pauses",
    metadata,
    # The latest ESI pause of each process (a worker, a Dagster step): steps read it so that a
    # paused refresh is not taken for a stalled one.
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("paused_until", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

esi_budget = sa.Table(
    "esi_budget",
    metadata,
    # One shared send timeline per ESI (base URL): every process books its request slots here, so the
    # whole fleet keeps KILLREPORT_ESI_MAX_RPS together. `next_slot` is epoch seconds.
    sa.Column("budget", sa.Text, primary_key=True),
    sa.Column("next_slot", sa.Float, nullable=False),
)

esi_fleet = sa.Table(
    "esi_fleet",
    metadata,
    # The processes sending to an ESI right now (heartbeat each second while they send): how many
    # share its error budget. A process that stops sending or dies drops out within seconds.
    sa.Column("member", sa.Text, primary_key=True),
    sa.Column("budget", sa.Text, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Index("ix_esi_fleet_budget", "budget"),
)
