"""usage records: the list cost of each request; the rollups sum it

The overview's provider cost was the token sums times the current base-tier list prices, which
understates long-context requests and moves with every price change. Settlement now records
each request's cost at the provider's list prices of the moment (`list_cost`, by the cost's own
rules: the tier the prompt reached, a class without a price at the input price), and the
rollups sum it.

Records older than this migration are given the list cost at the list prices of now, at the
tier their prices_applied names: the best figure there is, since what the list prices were
then was never kept. A record whose model has no list prices at that tier any more keeps NULL
(counted as unpriced by the rollups). The rollups are emptied and the watermark reset, so the
fold job folds every record again, with its list cost, on its next run (readers add the records
above the watermark meanwhile: the figures stay exact).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 23:30:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Record column -> the price class it bills at.
CLASS_COLUMNS = {
    "input_tokens": "input",
    "cache_read_tokens": "cache_read",
    "cache_write_5m_tokens": "cache_write_5m",
    "cache_write_1h_tokens": "cache_write_1h",
    "output_tokens": "output",
}


def backfill_sql(postgres: bool) -> str:
    def price(token_class: str) -> str:
        return f"MAX(CASE WHEN p.token_class = '{token_class}' THEN p.list_price END)"

    def tokens(column: str) -> str:
        # PostgreSQL raises on a bigint overflow: multiply as numeric there.
        return f"CAST(usage_records.{column} AS numeric)" if postgres else f"usage_records.{column}"

    terms = " + ".join(
        f"{tokens(column)} * COALESCE({price(token_class)}, {price('input')})"
        for column, token_class in CLASS_COLUMNS.items()
    )
    if postgres:
        tier = "COALESCE(CAST(usage_records.prices_applied ->> 'tier' AS bigint), 0)"
        rounded = f"CAST(div({terms} + 500000, 1000000) AS bigint)"
    else:
        tier = "COALESCE(CAST(json_extract(usage_records.prices_applied, '$.tier') AS integer), 0)"
        rounded = f"({terms} + 500000) / 1000000"
    return (
        f"UPDATE usage_records SET list_cost = (SELECT {rounded} "  # noqa: S608 (constant fragments)
        "FROM model_prices p JOIN catalog_models m ON m.id = p.model_pk "
        f"WHERE m.model_id = usage_records.model_id AND p.tier_threshold_tokens = {tier})"
    )


def upgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("list_cost", sa.BigInteger(), nullable=True))
    op.execute(backfill_sql(op.get_bind().dialect.name == "postgresql"))

    op.execute("DELETE FROM usage_daily_rollups")
    op.execute("DELETE FROM usage_rollup_folds")
    op.execute("UPDATE usage_rollup_state SET folded_through_id = 0")
    with op.batch_alter_table("usage_daily_rollups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("list_cost", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("list_unpriced", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade():
    with op.batch_alter_table("usage_daily_rollups", schema=None) as batch_op:
        batch_op.drop_column("list_unpriced")
        batch_op.drop_column("list_cost")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("list_cost")
