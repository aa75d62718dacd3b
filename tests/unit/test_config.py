"""Configuration: embedded defaults, generated development secrets, a strict production config."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app import create_app
from app.config import INSTANCE_PATH, ProductionConfig, embedded_database_url, embedded_redis_url


def test_production_refuses_to_start_without_secrets():
    class Production(ProductionConfig):
        SECRET_KEY = None
        KEY_HASH_SECRET = None

    with pytest.raises(RuntimeError, match="SECRET_KEY must be set in production"):
        create_app(Production)

    class ProductionWithoutKeySecret(ProductionConfig):
        SECRET_KEY = "set"
        KEY_HASH_SECRET = None

    with pytest.raises(RuntimeError, match="KEY_HASH_SECRET must be set in production"):
        create_app(ProductionWithoutKeySecret)


def test_production_refuses_to_start_without_a_public_base_url():
    """Emailed links are built from it; without it they would follow the request's Host header."""

    class Production(ProductionConfig):
        SECRET_KEY = "a"
        KEY_HASH_SECRET = "b"
        PUBLIC_BASE_URL = ""

    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL must be set in production"):
        create_app(Production)


def test_production_cookies_are_secure():
    class Production(ProductionConfig):
        SECRET_KEY = "a"
        KEY_HASH_SECRET = "b"
        PUBLIC_BASE_URL = "https://onekey.example"

    app = create_app(Production)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_development_generates_secrets_once_into_instance():
    first = create_app({"SECRET_KEY": None, "KEY_HASH_SECRET": None})
    second = create_app({"SECRET_KEY": None, "KEY_HASH_SECRET": None})
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["KEY_HASH_SECRET"] == second.config["KEY_HASH_SECRET"]
    assert first.config["SECRET_KEY"] != first.config["KEY_HASH_SECRET"]
    assert len(first.config["SECRET_KEY"]) >= 48
    secret_file = INSTANCE_PATH / "secret_key.txt"
    assert secret_file.stat().st_mode & 0o077 == 0


def test_embedded_defaults_live_in_instance():
    assert embedded_database_url() == f"sqlite:///{INSTANCE_PATH / 'onekey.sqlite3'}"
    assert embedded_redis_url() == f"unix://{INSTANCE_PATH / 'redis.sock'}"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}"})
    from app.extensions import db

    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.session.remove()
        db.engine.dispose()


def test_postgres_urls_use_psycopg3():
    app = create_app({"SQLALCHEMY_DATABASE_URI": "postgresql://u@localhost/db"})
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
