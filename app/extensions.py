"""Extension objects, created unbound and initialised in `create_app`."""

from __future__ import annotations

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData

# Stable constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()


def get_redis():
    """The app's Redis client (one connection pool per process)."""
    from flask import current_app

    return current_app.extensions["onekey_redis"]


def get_queue(name: str = "default"):
    """An RQ queue on the app's Redis: `billing`, `lifecycle` or `default`."""
    from flask import current_app
    from rq import Queue

    return Queue(name, connection=current_app.extensions["onekey_redis"])
