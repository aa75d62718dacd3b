"""OneKey: one API key for OpenAI, Anthropic, Google and xAI models."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import INSTANCE_PATH, PROJECT_ROOT, Config, config_for_environment, instance_secret
from app.extensions import csrf, db, htmx, login_manager, migrate
from app.request_limits import BoundedRequest
from app.services.terms import load_terms

SQLITE_BUSY_TIMEOUT_MS = 30_000
log = logging.getLogger("onekey.app")


def create_app(config: type[Config] | dict[str, Any] | None = None) -> Flask:
    """Assemble the app. `config` is a config class, or a dict of overrides to the environment's."""
    app = Flask(
        __name__,
        instance_path=str(INSTANCE_PATH),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    if isinstance(config, type):
        app.config.from_object(config)
    else:
        app.config.from_object(config_for_environment())
        app.config.update(config or {})
    _resolve_secrets(app)
    _check_public_base_url(app)
    # Every page shows the Terms version: a content file it cannot be read from stops the start.
    load_terms()
    _configure_database(app)
    _configure_logging(app)

    if app.config["PROXY_FIX_HOPS"]:
        hops = app.config["PROXY_FIX_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    htmx.init_app(app)
    app.request_class = BoundedRequest  # htmx's request, with bodies bounded
    login_manager.init_app(app)
    _init_redis(app)

    from app import models  # noqa: F401  (the whole schema, for Alembic)
    from app.admin import bp as admin_bp
    from app.auth import bp as auth_bp
    from app.cli import register_cli
    from app.metrics import init_metrics
    from app.portal import bp as portal_bp
    from app.proxy import bp as proxy_bp
    from app.public import bp as public_bp
    from app.web import register_web_hooks
    from app.webhooks import bp as webhooks_bp

    init_metrics(app)
    app.register_blueprint(public_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(portal_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(proxy_bp)
    app.register_blueprint(webhooks_bp)
    # After the blueprints, so the admin guard runs before the CSRF check.
    csrf.init_app(app)
    csrf.exempt(proxy_bp)
    csrf.exempt(webhooks_bp)  # Stripe signs its requests; there is no session to protect
    register_web_hooks(app)
    register_cli(app)
    return app


def _resolve_secrets(app: Flask) -> None:
    for name in ("SECRET_KEY", "KEY_HASH_SECRET"):
        if app.config.get(name):
            continue
        if not app.config.get("GENERATE_MISSING_SECRETS"):
            raise RuntimeError(f"{name} must be set in production")
        app.config[name] = instance_secret(name)


def _check_public_base_url(app: Flask) -> None:
    if app.config.get("REQUIRE_PUBLIC_BASE_URL") and not app.config.get("PUBLIC_BASE_URL"):
        raise RuntimeError("PUBLIC_BASE_URL must be set in production")


def _configure_database(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgresql://"):
        # psycopg 3 is the driver; operators write the plain URL.
        uri = "postgresql+psycopg://" + uri.removeprefix("postgresql://")
        app.config["SQLALCHEMY_DATABASE_URI"] = uri
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # No `pool_pre_ping`: it costs a round trip per checkout. A connection the server dropped fails
    # its statement instead; SQLAlchemy then discards the pool's connections, the request is
    # answered with a retryable 503 and the next one connects afresh. Recycling keeps connections
    # younger than the idle timeouts of proxies in between.
    options.setdefault("pool_recycle", 1800)
    if uri.startswith("postgresql"):
        # A gevent worker runs many requests at once; each holds a connection only briefly (never
        # while relaying), but a burst of settlements needs more than SQLAlchemy's default five.
        options.setdefault("pool_size", app.config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", app.config["DB_POOL_OVERFLOW"])
        options.setdefault("pool_timeout", 10)
    if uri.startswith("sqlite"):
        INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
        _keep_sqlite_file_private(make_url(uri).database)
        options.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _keep_sqlite_file_private(database: str | None) -> None:
    """Create the database file readable by its owner only, like the secret files beside it (it
    holds password hashes and key HMACs), or make an existing one so. SQLite gives the `-wal` and
    `-shm` files it creates the database file's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite reports it when it connects
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        file = path.with_name(path.name + suffix)
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except PermissionError:
            log.warning("%s is readable by others and not ours to change", file)


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy, not pysqlite, decide when transactions begin (see the "begin" hook).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:
    # IMMEDIATE takes the write lock up front, so a read-then-write transaction waits for the busy
    # timeout instead of failing when another process writes in between.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )


def _init_redis(app: Flask) -> None:
    from redis import Redis

    app.extensions["onekey_redis"] = Redis.from_url(
        app.config["REDIS_URL"], socket_connect_timeout=5, socket_timeout=10
    )
