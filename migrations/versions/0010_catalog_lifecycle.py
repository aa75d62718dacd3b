"""catalogue lifecycle: model status, retirement date, replacement; price source and date

Each model carries its provider's lifecycle (active, deprecated with a retirement date, retired) and
its replacement; each price, where it was read and when; and a price carries the mark a sync leaves
when it raised an admin's sell price above a risen list price.

Columns are only added. On SQLite they are added with plain ALTER TABLE statements (a CHECK in the
column definition) rather than batch mode: batch mode would rebuild catalog_models, and rebuilding
it drops the version triggers of migration 0003.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-04 19:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

STATUS_CHECK = "status IN ('active', 'deprecated', 'retired')"

SQLITE_UP = [
    "ALTER TABLE catalog_models ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active' "
    f"CONSTRAINT ck_catalog_models_status CHECK ({STATUS_CHECK})",
    "ALTER TABLE catalog_models ADD COLUMN retires_on DATE",
    "ALTER TABLE catalog_models ADD COLUMN replacement_model_id VARCHAR(128)",
]

PRICE_COLUMNS = [
    ("source", sa.Text()),
    ("as_of", sa.Date()),
    ("raised_at", sa.DateTime()),
    ("raised_from_sell", sa.BigInteger()),
    ("raised_from_list", sa.BigInteger()),
]


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)
    else:
        op.add_column(
            "catalog_models",
            sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        )
        op.add_column("catalog_models", sa.Column("retires_on", sa.Date(), nullable=True))
        op.add_column(
            "catalog_models",
            sa.Column("replacement_model_id", sa.String(length=128), nullable=True),
        )
        op.create_check_constraint(op.f("ck_catalog_models_status"), "catalog_models", STATUS_CHECK)
    for name, type_ in PRICE_COLUMNS:
        op.add_column("model_prices", sa.Column(name, type_, nullable=True))


def downgrade():
    # SQLite (3.35+) drops these columns in place, the CHECK with its own column.
    for name, _ in reversed(PRICE_COLUMNS):
        op.drop_column("model_prices", name)
    op.drop_column("catalog_models", "replacement_model_id")
    op.drop_column("catalog_models", "retires_on")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_catalog_models_status"), "catalog_models", type_="check")
    op.drop_column("catalog_models", "status")
