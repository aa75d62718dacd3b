"""api keys: pause and resume, and a credit limit that resets daily, weekly or monthly

`limit_reset` is OpenRouter's (midnight UTC; weeks start on Monday). The limit then counts this
period's spend, usage − `period_usage_base_nanocredits` (the usage when `period_started_at`'s period
began); settlement rolls the period over. `paused_at` set: the key is refused until resumed.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-05 10:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limit_reset", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column(
                "period_usage_base_nanocredits",
                sa.BigInteger(),
                server_default="0",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("period_started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_api_keys_limit_reset"),
            "limit_reset IS NULL OR limit_reset IN ('daily', 'weekly', 'monthly')",
        )


def downgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_keys_limit_reset"), type_="check")
        batch_op.drop_column("paused_at")
        batch_op.drop_column("period_started_at")
        batch_op.drop_column("period_usage_base_nanocredits")
        batch_op.drop_column("limit_reset")
