"""Initial schema: contract tables, membership history, refresh ledger, ESI HTTP cache.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alliances",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("ticker", sa.Text, nullable=False),
        sa.Column("date_founded", TS),
        sa.Column("creator_corporation_id", ID),
        sa.Column("creator_id", ID),
        sa.Column("executor_corporation_id", ID),
        sa.Column("faction_id", ID),
        sa.Column("corporation_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("member_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS),
    )
    op.create_table(
        "corporations",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("ticker", sa.Text, nullable=False),
        sa.Column("member_count", sa.BigInteger, nullable=False),
        sa.Column("ceo_id", ID),
        sa.Column("creator_id", ID),
        sa.Column("date_founded", TS),
        sa.Column("description", sa.Text),
        sa.Column("alliance_id", ID),
        sa.Column("faction_id", ID),
        sa.Column("home_station_id", ID),
        sa.Column("shares", sa.BigInteger),
        sa.Column("tax_rate", sa.Float, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("war_eligible", sa.Boolean),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS),
    )
    op.create_index("ix_corporations_alliance_id", "corporations", ["alliance_id"])
    op.create_table(
        "alliance_corporations",
        sa.Column("alliance_id", ID, primary_key=True, autoincrement=False),
        sa.Column("corporation_id", ID, primary_key=True, autoincrement=False),
        sa.Column("first_seen_at", TS, nullable=False),
    )
    op.create_index("ix_alliance_corporations_corporation_id", "alliance_corporations", ["corporation_id"])
    op.create_table(
        "alliance_membership_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alliance_id", ID, nullable=False),
        sa.Column("corporation_id", ID, nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("refresh_id", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_alliance_membership_history_corporation",
        "alliance_membership_history",
        ["corporation_id", "observed_at"],
    )
    op.create_index(
        "ix_alliance_membership_history_alliance",
        "alliance_membership_history",
        ["alliance_id", "observed_at"],
    )
    op.create_table(
        "alliance_snapshots",
        sa.Column("alliance_id", ID, primary_key=True, autoincrement=False),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("member_count", sa.BigInteger, nullable=False),
        sa.Column("corporation_count", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_alliance_snapshots_date", "alliance_snapshots", ["snapshot_date"])
    op.create_table(
        "corporation_snapshots",
        sa.Column("corporation_id", ID, primary_key=True, autoincrement=False),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("member_count", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_corporation_snapshots_date", "corporation_snapshots", ["snapshot_date"])
    op.create_table(
        "refresh_ledger",
        sa.Column("refresh_id", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(32), primary_key=True),
        sa.Column("entity_id", ID, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_refresh_ledger_status", "refresh_ledger", ["refresh_id", "step", "status"])
    op.create_table(
        "esi_cache",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "esi_cache",
        "refresh_ledger",
        "corporation_snapshots",
        "alliance_snapshots",
        "alliance_membership_history",
        "alliance_corporations",
        "corporations",
        "alliances",
    ):
        op.drop_table(table)
