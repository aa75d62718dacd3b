"""usage rollups: daily sums per account, key, model and status; the usage log's indexes

The usage page reads daily rollups up to a watermark id plus the raw records above it, so its
totals and chart stay exact without summing every record. The single-column indexes on
usage_records.account_id and api_key_id give way to (account_id, created_at, id) and
(api_key_id, created_at, id), which serve the same lookups and the log's newest-first keyset
paging: the proxy's inserts maintain as many indexes as before.

The rollups start empty: the first run of the fold job (every minute, from the scheduler) folds
the existing records, in chunks.

Revision ID: 0006
Revises: 0012
Create Date: 2026-12-05 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0012"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "usage_daily_rollups",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_5m_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_daily_rollups")),
        sa.UniqueConstraint(
            "account_id",
            "day",
            "api_key_id",
            "provider",
            "model_id",
            "status",
            name="uq_usage_daily_rollups_group",
        ),
    )
    op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folded_through_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollup_state")),
    )
    op.create_table(
        "usage_rollup_folds",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("folded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollup_folds")),
    )
    op.create_index(
        op.f("ix_usage_rollup_folds_folded_at"), "usage_rollup_folds", ["folded_at"], unique=False
    )

    op.create_index(
        "ix_usage_records_account_created",
        "usage_records",
        ["account_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_usage_records_key_created",
        "usage_records",
        ["api_key_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index(op.f("ix_usage_records_account_id"), table_name="usage_records")
    op.drop_index(op.f("ix_usage_records_api_key_id"), table_name="usage_records")


def downgrade():
    op.create_index(
        op.f("ix_usage_records_api_key_id"), "usage_records", ["api_key_id"], unique=False
    )
    op.create_index(
        op.f("ix_usage_records_account_id"), "usage_records", ["account_id"], unique=False
    )
    op.drop_index("ix_usage_records_key_created", table_name="usage_records")
    op.drop_index("ix_usage_records_account_created", table_name="usage_records")
    op.drop_index(op.f("ix_usage_rollup_folds_folded_at"), table_name="usage_rollup_folds")
    op.drop_table("usage_rollup_folds")
    op.drop_table("usage_rollup_state")
    op.drop_table("usage_daily_rollups")
