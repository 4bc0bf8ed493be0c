"""When ESI last confirmed each corporation, and what each snapshot row's figures were confirmed at.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("corporations") as table:
        table.add_column(sa.Column("confirmed_at", TS))
        table.create_index("ix_corporations_confirmed_at", ["confirmed_at"])
    with op.batch_alter_table("corporation_snapshots") as table:
        table.add_column(sa.Column("confirmed_at", TS))
    # Rows stored before: their last change is the latest confirmation known.
    op.execute("UPDATE corporations SET confirmed_at = updated_at")
    op.execute(
        "UPDATE corporation_snapshots SET confirmed_at = "
        "(SELECT updated_at FROM corporations WHERE corporations.id = corporation_snapshots.corporation_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("corporation_snapshots") as table:
        table.drop_column("confirmed_at")
    with op.batch_alter_table("corporations") as table:
        table.drop_index("ix_corporations_confirmed_at")
        table.drop_column("confirmed_at")
