"""The fleet's shared ESI budget: one send timeline per ESI, and the processes sending to it.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "esi_budget",
        sa.Column("budget", sa.Text, primary_key=True),
        sa.Column("next_slot", sa.Float, nullable=False),
    )
    op.create_table(
        "esi_fleet",
        sa.Column("member", sa.Text, primary_key=True),
        sa.Column("budget", sa.Text, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    op.create_index("ix_esi_fleet_budget", "esi_fleet", ["budget"])


def downgrade() -> None:
    op.drop_index("ix_esi_fleet_budget", "esi_fleet")
    op.drop_table("esi_fleet")
    op.drop_table("esi_budget")
