"""activity and alerts: the customer-visible note of a ledger entry, the index the activity page and
the dashboard's spend read, and the low-balance email's threshold and state

`ledger_entries.public_note` is what the customer's activity shows about a grant or adjustment (the
admin's `note` stays for admins). The index on (account_id, kind, created_at, amount) lets the
activity page find usage days and sum a day's usage debits from the index alone, and replaces the
index on account_id alone (its prefix), so a settlement still maintains as many ledger indexes as
before. Accounts gain the low-balance threshold (NULL: no alert) and when the alert for the current
crossing was sent (NULL: armed), with a partial index over the accounts that set one.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-05 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

WATCHED = sa.text("low_balance_threshold IS NOT NULL")


def upgrade():
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_note", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_ledger_entries_account_kind_created",
            ["account_id", "kind", "created_at", "amount"],
            unique=False,
        )
        batch_op.drop_index("ix_ledger_entries_account_id")

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("low_balance_threshold", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("low_balance_alert_sent_at", sa.DateTime(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_accounts_low_balance_threshold_positive"), "low_balance_threshold > 0"
        )
        batch_op.create_index(
            "ix_accounts_low_balance_watch",
            ["id"],
            unique=False,
            postgresql_where=WATCHED,
            sqlite_where=WATCHED,
        )


def downgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_accounts_low_balance_watch")
        batch_op.drop_constraint(
            op.f("ck_accounts_low_balance_threshold_positive"), type_="check"
        )
        batch_op.drop_column("low_balance_alert_sent_at")
        batch_op.drop_column("low_balance_threshold")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_account_id", ["account_id"], unique=False)
        batch_op.drop_index("ix_ledger_entries_account_kind_created")
        batch_op.drop_column("public_note")
