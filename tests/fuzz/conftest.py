"""Fuzzing the proxy in-process (Flask's test client, for speed) against the fake upstreams.

`make test` runs FUZZ_EXAMPLES (default 60) derandomised examples per route, so CI is
deterministic; `ONEKEY_FUZZ_EXAMPLES=5000 pytest tests/fuzz` is the nightly run, with fresh random
examples each time (bench/README.md, "Fuzzing").
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import select

from app.extensions import db
from app.models import Account
from tests.proxy.conftest import UPSTREAM_KEYS, _reset_fakes, fakes, make_funded_key  # noqa: F401

DEFAULT_EXAMPLES = 60
FUZZ_EXAMPLES = int(os.environ.get("ONEKEY_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
# Without the variable the examples are the same on every run (no example database either);
# a nightly run explores afresh and prints how to reproduce what it finds.
fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize="ONEKEY_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)

# Python's default, which gunicorn keeps. Hypothesis raises the limit by 2,000 frames while a test
# runs (for its own engine), under which the gateway would parse and encode JSON nested far deeper
# than it can in production: its recursion errors would go unseen.
PRODUCTION_RECURSION_LIMIT = 1000
T = TypeVar("T")


def as_a_server_thread(call: Callable[[], T]) -> T:
    """Run `call` as a server's worker thread would: on a fresh stack, under Python's default
    recursion limit."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:
            outcome["error"] = error

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(PRODUCTION_RECURSION_LIMIT)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        sys.setrecursionlimit(limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


PROVIDER_SETTINGS = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "xai": ("XAI_BASE_URL", "XAI_API_KEY"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    "gemini": ("GEMINI_BASE_URL", "GEMINI_API_KEY"),
}


@pytest.fixture
def gateway(app, fakes, catalog):  # noqa: F811
    """A test client of the session's app, its providers pointed at the fakes and the per-key
    rate limit lifted (a nightly run sends thousands of requests a minute with one key)."""
    overrides = {"UPSTREAM_CONNECT_TIMEOUT": 2, "UPSTREAM_READ_TIMEOUT": 3, "RATE_LIMIT_RPM": 10**9}
    for provider, (url_setting, key_setting) in PROVIDER_SETTINGS.items():
        overrides[url_setting] = fakes.base_urls[provider]
        overrides[key_setting] = UPSTREAM_KEYS[provider]
    saved = {name: app.config[name] for name in overrides}
    app.config.update(overrides)
    yield app.test_client()
    app.config.update(saved)


@dataclass
class Customer:
    app: object
    key: str
    account_id: int

    def money(self) -> tuple[int, int]:
        """(balance, held) in nanocredits, read from the database."""
        with self.app.app_context():
            row = db.session.execute(
                select(Account.balance_nanocredits, Account.held_nanocredits).where(
                    Account.id == self.account_id
                )
            ).one()
            db.session.remove()
        return row.balance_nanocredits, row.held_nanocredits


@pytest.fixture
def customer(app, gateway):
    key, account_id, _ = make_funded_key(app, "1000")
    return Customer(app, key, account_id)
