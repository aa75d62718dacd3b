"""A live OneKey (gunicorn, in its own process) against the test database and Redis, with the fake
upstream providers of tests/fakes behind it. The official SDKs are the clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.extensions import db
from app.models import Account
from app.services.accounts import account_by_email
from app.services.keys import create_key
from app.services.ledger import grant_credits
from app.services.money import credits_to_nanos
from tests.fakes.upstreams import FakeUpstreams

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Server logs are kept after the run, for reading when a test fails.
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
UPSTREAM_KEYS = {
    "openai": "sk-upstream-openai",
    "xai": "xai-upstream",
    "anthropic": "sk-ant-upstream",
    "gemini": "gemini-upstream",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def fakes():
    upstreams = FakeUpstreams(keys=UPSTREAM_KEYS)
    upstreams.start()
    yield upstreams
    upstreams.stop()


class LiveServer:
    def __init__(self, app, fakes, **overrides):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""),
            "REDIS_URL": app.config["REDIS_URL"],
            "SECRET_KEY": app.config["SECRET_KEY"],
            "KEY_HASH_SECRET": app.config["KEY_HASH_SECRET"],
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "OPENAI_BASE_URL": fakes.base_urls["openai"],
            "OPENAI_API_KEY": UPSTREAM_KEYS["openai"],
            "XAI_BASE_URL": fakes.base_urls["xai"],
            "XAI_API_KEY": UPSTREAM_KEYS["xai"],
            "ANTHROPIC_BASE_URL": fakes.base_urls["anthropic"],
            "ANTHROPIC_API_KEY": UPSTREAM_KEYS["anthropic"],
            "GEMINI_BASE_URL": fakes.base_urls["gemini"],
            "GEMINI_API_KEY": UPSTREAM_KEYS["gemini"],
            "UPSTREAM_CONNECT_TIMEOUT": "2",
            "UPSTREAM_READ_TIMEOUT": "3",
            "SSE_KEEPALIVE_SECONDS": "1",
            **overrides,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def live_server(app, fakes):
    server = LiveServer(app, fakes)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_fakes(request):
    if "fakes" in request.fixturenames:
        request.getfixturevalue("fakes").reset()
    yield


_customers = iter(range(10**9))


def make_funded_key(app, credits: str = "10", *, email: str | None = None, **key_fields):
    """A key on an account holding `credits` (granted): (plaintext, account id, key id)."""
    from app.services.accounts import register

    email = email or f"customer{next(_customers)}@example.com"
    with app.app_context():
        account = account_by_email(email) or register(
            email=email,
            password="a long enough passphrase",
            age_confirmed=True,
            terms_accepted=True,
        )
        if credits_to_nanos(credits) > 0:
            grant_credits(
                account.id,
                credits_to_nanos(credits),
                note="test credit",
                idempotency_key=f"test-grant-{email}-{time.monotonic_ns()}",
            )
        key, plaintext = create_key(db.session.get(Account, account.id), name="test", **key_fields)
        db.session.commit()
        return plaintext, account.id, key.id


@pytest.fixture
def funded_key(app, catalog):
    """funded_key(credits="10", email=None, **key fields) -> (plaintext, account id, key id)."""

    def make(credits: str = "10", **kwargs):
        return make_funded_key(app, credits, **kwargs)

    return make
