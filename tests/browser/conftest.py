"""A live server and a Chromium browser for the browser tests.

The server runs the session `app` fixture of tests/conftest.py in a thread of this process, so a test
can look in the database with `app.app_context()` while the browser drives the pages. Chromium is the
system one (/usr/bin/chromium, or $ONEKEY_CHROMIUM): Playwright's own browsers are never downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import serve_in_thread

CHROMIUM = os.environ.get("ONEKEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 10_000


def _skip_or_fail_in_ci(reason: str) -> None:
    # CI sets CI=true; a browser test skipped there would pass the run without having run.
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI needs the browser tests to run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def live_server(app):
    """The app served on 127.0.0.1 on a free port; yields its base URL (no trailing slash)."""
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the whole run; skipped without one, except in CI, where it fails."""
    if not Path(CHROMIUM).exists():
        _skip_or_fail_in_ci(f"no Chromium at {CHROMIUM}")
    try:
        from playwright import sync_api
    except ImportError:
        _skip_or_fail_in_ci("Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(chromium, live_server):
    """Open browser contexts on the live server: new_context(java_script_enabled=False, ...)."""
    contexts = []

    def make(**options):
        options.setdefault("base_url", live_server)
        context = chromium.new_context(**options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context, live_server):
    """A page in a fresh context (no cookies) with JavaScript, where the Copy button may use the clipboard."""
    context = new_context(permissions=["clipboard-read", "clipboard-write"])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    return context.new_page()


@pytest.fixture
def page_without_js(new_context):
    """A page in a fresh context with JavaScript turned off: htmx never loads."""
    return new_context(java_script_enabled=False).new_page()
