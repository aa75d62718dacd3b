"""usage records: the basis of an estimated record's token counts

A stream dropped before the provider reported its counts is billed from estimates; the record keeps
how each estimate was made (bytes of text sent and delivered, images, the rule applied) so the usage
page can show it. NULL for records billed from the provider's own counts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:40:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("estimate_basis", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("estimate_basis")
