"""An index for a step's poll: when its ledger rows last changed, at any universe size.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_refresh_ledger_updated_at", "refresh_ledger", ["refresh_id", "step", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_refresh_ledger_updated_at", "refresh_ledger")
