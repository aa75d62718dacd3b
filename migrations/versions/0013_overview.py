"""overview: an index on ledger_entries (kind, created_at, amount)

The admin overview sums every account's entries of a few kinds per day over a range; the index
on (account_id, kind, created_at, amount) leads with the account, so without this one the sum
reads the whole table. With it, the sum is read from the index alone.

Revision ID: 0013
Revises: 0008
Create Date: 2026-12-04 20:00:00

"""

from alembic import op

revision = "0013"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_ledger_entries_kind_created", "ledger_entries", ["kind", "created_at", "amount"]
    )


def downgrade():
    op.drop_index("ix_ledger_entries_kind_created", table_name="ledger_entries")
