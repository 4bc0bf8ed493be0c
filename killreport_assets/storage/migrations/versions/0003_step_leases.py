"""Step leases (one refresh per ESI step, jobs of dead runs withdrawn) and ESI pauses (seen by steps).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "step_leases",
        sa.Column("step", sa.String(32), primary_key=True),
        sa.Column("refresh_id", sa.String(64), nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
    )
    op.create_table(
        "esi_pauses",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("paused_until", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("esi_pauses")
    op.drop_table("step_leases")
