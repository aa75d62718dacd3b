"""Fixtures of the web page tests."""

from __future__ import annotations

import pytest

from tests.helpers import Browser


@pytest.fixture
def admin(app, make_account):
    """A signed-in admin's browser."""
    make_account("admin@example.com", admin=True)
    browser = Browser(app.test_client())
    browser.login("admin@example.com")
    return browser
