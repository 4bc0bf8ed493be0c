"""Indexes for the latest-refresh lookup and for retention (refresh ledger and ESI cache by age).

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_refresh_ledger_created_at", "refresh_ledger", ["created_at"])
    op.create_index("ix_esi_cache_updated_at", "esi_cache", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_esi_cache_updated_at", "esi_cache")
    op.drop_index("ix_refresh_ledger_created_at", "refresh_ledger")
