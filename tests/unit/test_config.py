"""Configuration: embedded defaults, generated development secrets, a strict production config."""

from __future__ import annotations

import os

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


class _Production(ProductionConfig):
    SECRET_KEY = "a"
    KEY_HASH_SECRET = "b"
    PUBLIC_BASE_URL = "https://onekey.example"


@pytest.mark.parametrize("path", ["/healthz", "/terms", "/no/such/page"])
def test_production_answers_carry_strict_transport_security(path):
    response = create_app(_Production).test_client().get(path)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_development_answers_carry_no_strict_transport_security():
    # Development serves plain HTTP on localhost: HSTS there would pin the browser to HTTPS.
    response = create_app({}).test_client().get("/healthz")
    assert "Strict-Transport-Security" not in response.headers


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def _open_and_write(app) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        db.session.execute(text("INSERT INTO t VALUES (1)"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def test_the_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    """Like the secret files beside it: it holds password hashes and the key HMACs."""
    database = tmp_path / "onekey.sqlite3"
    previous = os.umask(0o022)
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"})
        from app.extensions import db

        with app.app_context():
            db.session.execute(text("CREATE TABLE t (x INTEGER)"))
            db.session.execute(text("INSERT INTO t VALUES (1)"))
            db.session.commit()
            # While a connection is open, its write-ahead log and shared memory exist too.
            for suffix in ("", "-wal", "-shm"):
                assert _mode(database.with_name(database.name + suffix)) == 0o600, suffix
            db.session.remove()
            db.engine.dispose()
    finally:
        os.umask(previous)


def test_an_existing_world_readable_sqlite_database_is_made_private(tmp_path):
    database = tmp_path / "onekey.sqlite3"
    previous = os.umask(0o022)
    try:
        _open_and_write(create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"}))
        for suffix in ("", "-wal", "-shm"):
            sidecar = database.with_name(database.name + suffix)
            sidecar.touch()
            sidecar.chmod(0o644)
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"})
        for suffix in ("", "-wal", "-shm"):
            assert _mode(database.with_name(database.name + suffix)) == 0o600, suffix
    finally:
        os.umask(previous)
