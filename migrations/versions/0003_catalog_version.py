"""catalog version: a new random value with every change to a model or its prices

The proxy caches catalogue models per process; its hold statement checks the cached copy's version,
so a disabled model or a changed price applies to the very next request in every process. Triggers
set the version whoever changes the rows (the admin pages, a sync, plain SQL). Random rather than
counted, so a model deleted and created again never takes the version of an older copy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POSTGRES_UP = """
CREATE FUNCTION onekey_new_catalog_version() RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT floor(random() * 9007199254740991)::bigint + 2 $$;

CREATE FUNCTION onekey_catalog_model_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version = OLD.version THEN
        NEW.version := onekey_new_catalog_version();
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION onekey_model_price_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_models SET version = onekey_new_catalog_version()
    WHERE id IN (NEW.model_pk, OLD.model_pk);
    RETURN NULL;
END $$;

CREATE TRIGGER catalog_models_version BEFORE UPDATE ON catalog_models
    FOR EACH ROW EXECUTE FUNCTION onekey_catalog_model_changed();
CREATE TRIGGER model_prices_version_insert AFTER INSERT ON model_prices
    FOR EACH ROW EXECUTE FUNCTION onekey_model_price_changed();
CREATE TRIGGER model_prices_version_update AFTER UPDATE ON model_prices
    FOR EACH ROW EXECUTE FUNCTION onekey_model_price_changed();
CREATE TRIGGER model_prices_version_delete AFTER DELETE ON model_prices
    FOR EACH ROW EXECUTE FUNCTION onekey_model_price_changed();
"""

POSTGRES_DOWN = """
DROP TRIGGER model_prices_version_delete ON model_prices;
DROP TRIGGER model_prices_version_update ON model_prices;
DROP TRIGGER model_prices_version_insert ON model_prices;
DROP TRIGGER catalog_models_version ON catalog_models;
DROP FUNCTION onekey_model_price_changed();
DROP FUNCTION onekey_catalog_model_changed();
DROP FUNCTION onekey_new_catalog_version();
"""

# SQLite's random() is a signed 64-bit integer; `WHEN` stops the trigger re-firing on its own write.
SQLITE_UP = [
    """CREATE TRIGGER catalog_models_version AFTER UPDATE ON catalog_models
       WHEN NEW.version = OLD.version
       BEGIN UPDATE catalog_models SET version = random() WHERE id = NEW.id; END""",
    """CREATE TRIGGER model_prices_version_insert AFTER INSERT ON model_prices
       BEGIN UPDATE catalog_models SET version = random() WHERE id = NEW.model_pk; END""",
    """CREATE TRIGGER model_prices_version_update AFTER UPDATE ON model_prices
       BEGIN UPDATE catalog_models SET version = random() WHERE id IN (NEW.model_pk, OLD.model_pk);
       END""",
    """CREATE TRIGGER model_prices_version_delete AFTER DELETE ON model_prices
       BEGIN UPDATE catalog_models SET version = random() WHERE id = OLD.model_pk; END""",
]
SQLITE_TRIGGERS = (
    "catalog_models_version",
    "model_prices_version_insert",
    "model_prices_version_update",
    "model_prices_version_delete",
)


def upgrade():
    with op.batch_alter_table("catalog_models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("version", sa.BigInteger(), nullable=False, server_default="1")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_UP)
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_DOWN)
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("catalog_models", schema=None) as batch_op:
        batch_op.drop_column("version")
