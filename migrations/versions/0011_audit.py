"""audit: credit adjustments made on the account page, and the indexes of the audit log and the
account search

`credit_adjustments` holds an admin's grant or debit beside its ledger entry: the reason (for admins;
audited) and a note the customer may see or not (`note_visible`). The audit log gains indexes for
its filters (admin or action, each with the date it is ordered by, and the date alone); purchases record the Stripe charge that paid them, and usage
records are indexed by request id, so the account search finds an account by either.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "credit_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("note_visible", sa.Boolean(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_adjustments_amount_not_zero")),
        sa.CheckConstraint(
            "NOT note_visible OR note IS NOT NULL",
            name=op.f("ck_credit_adjustments_visible_note_given"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_credit_adjustments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["accounts.id"], name=op.f("fk_credit_adjustments_actor_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_credit_adjustments_ledger_entry_id_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_adjustments")),
        sa.UniqueConstraint("ledger_entry_id", name=op.f("uq_credit_adjustments_ledger_entry_id")),
    )
    with op.batch_alter_table("credit_adjustments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_adjustments_account_id"), ["account_id"], unique=False
        )

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_log_actor_created", ["actor_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_audit_log_action_created", ["action", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_log_created_at"), ["created_at"], unique=False)

    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_charge_id", sa.String(length=255), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_purchases_stripe_charge_id"), ["stripe_charge_id"], unique=False
        )

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_records_request_id"), ["request_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_records_request_id"))

    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchases_stripe_charge_id"))
        batch_op.drop_column("stripe_charge_id")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_created_at"))
        batch_op.drop_index("ix_audit_log_action_created")
        batch_op.drop_index("ix_audit_log_actor_created")

    with op.batch_alter_table("credit_adjustments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_adjustments_account_id"))

    op.drop_table("credit_adjustments")
