"""lifecycle: refund, closure and termination requests, their refund parts; refund reservations

A refund's reservation is a hold with purpose 'refund' and no expiry: only its refund (or a denial or
failure) closes it. Accounts gain the status 'closed' and the message shown to the customer about a
suspension or termination.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 03:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN_STATES = sa.text("state IN ('requested', 'approved', 'processing')")


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_message", sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_accounts_status"), "status IN ('active', 'suspended', 'closed', 'terminated')"
        )

    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=16), server_default="request", nullable=False)
        )
        batch_op.alter_column("expires_at", existing_type=sa.DateTime(), nullable=True)
        batch_op.create_check_constraint(
            op.f("ck_holds_purpose"), "purpose IN ('request', 'refund')"
        )
        batch_op.create_check_constraint(
            op.f("ck_holds_request_expires"), "purpose = 'refund' OR expires_at IS NOT NULL"
        )

    op.create_table(
        "account_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=True),
        sa.Column("requested_cents", sa.Integer(), nullable=False),
        sa.Column("approved_cents", sa.Integer(), nullable=True),
        sa.Column("refunded_cents", sa.Integer(), nullable=False),
        sa.Column("forfeited_nanocredits", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("customer_message", sa.Text(), nullable=True),
        sa.Column("hold_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("waiting_for", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('refund', 'closure', 'termination')", name=op.f("ck_account_requests_kind")
        ),
        sa.CheckConstraint(
            "state IN ('requested', 'approved', 'denied', 'processing', 'done', 'failed')",
            name=op.f("ck_account_requests_state"),
        ),
        sa.CheckConstraint(
            "requested_cents >= 0", name=op.f("ck_account_requests_requested_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_requests_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["accounts.id"], name=op.f("fk_account_requests_decided_by_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_account_requests_hold_id_holds")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["purchases.id"],
            name=op.f("fk_account_requests_purchase_id_purchases"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["accounts.id"],
            name=op.f("fk_account_requests_requested_by_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_requests")),
    )
    with op.batch_alter_table("account_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_requests_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_account_requests_state"), ["state"], unique=False)
        # One open request per account, whoever races to make a second.
        batch_op.create_index(
            "uq_account_requests_one_open",
            ["account_id"],
            unique=True,
            postgresql_where=OPEN_STATES,
            sqlite_where=OPEN_STATES,
        )

    op.create_table(
        "refund_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'failed')", name=op.f("ck_refund_parts_state")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_refund_parts_amount_positive")),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_refund_parts_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["account_requests.id"],
            name=op.f("fk_refund_parts_request_id_account_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_parts")),
        sa.UniqueConstraint(
            "request_id", "purchase_id", "attempt", name="uq_refund_parts_request_purchase"
        ),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_refund_parts_stripe_refund_id")),
    )
    with op.batch_alter_table("refund_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refund_parts_request_id"), ["request_id"], unique=False)


def downgrade():
    op.drop_table("refund_parts")
    op.drop_table("account_requests")
    op.execute("DELETE FROM holds WHERE purpose = 'refund'")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_holds_request_expires"), type_="check")
        batch_op.drop_constraint(op.f("ck_holds_purpose"), type_="check")
        batch_op.alter_column("expires_at", existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_column("purpose")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_accounts_status"), "status IN ('active', 'suspended', 'terminated')"
        )
        batch_op.drop_column("status_message")
