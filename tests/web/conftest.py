"""Fixtures of the web page tests."""

from __future__ import annotations

import logging

import pytest
from rq import SimpleWorker

from app.extensions import get_queue
from tests.helpers import Browser


@pytest.fixture
def admin(app, make_account):
    """A signed-in admin's browser: enrolled, and past the second factor (the code of now)."""
    make_account("admin@example.com", admin=True)
    browser = Browser(app.test_client())
    browser.login("admin@example.com")
    return browser


@pytest.fixture
def run_mail_jobs(app, caplog):
    """Run the queued jobs as the worker would; run_mail_jobs() returns the mail they logged."""

    def run() -> str:
        with app.app_context(), caplog.at_level(logging.INFO, logger="onekey.mail"):
            queue = get_queue("default")
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
        return "\n".join(r.getMessage() for r in caplog.records if r.name == "onekey.mail")

    return run
