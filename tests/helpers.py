"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager

from werkzeug.serving import make_server

CSRF_INPUT = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)
# The token is signed with a timestamp, so two renderings a second apart differ in it.
CSRF_TOKEN_VALUE = re.compile(
    r'(name="csrf_token"(?: type="hidden")? value="|"X-CSRFToken": ")[^"]+'
)
TEST_PASSWORD = "a long enough passphrase"


def csrf_token_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1) or match.group(2)


def without_csrf_tokens(html: str) -> str:
    """The page with every CSRF token blanked, for comparing two renderings of it."""
    return CSRF_TOKEN_VALUE.sub(r"\1", html)


class Browser:
    """A test client that fills in the CSRF token from the page, as a browser would."""

    def __init__(self, client):
        self.client = client

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post_form(self, page: str, data: dict, *, action: str | None = None, **kwargs):
        token = csrf_token_from(self.client.get(page).get_data(as_text=True))
        return self.client.post(action or page, data={"csrf_token": token, **data}, **kwargs)

    def signup(self, email: str, password: str = TEST_PASSWORD, **overrides):
        data = {"email": email, "password": password, "age_confirmed": "y", "terms_accepted": "y"}
        data.update(overrides)
        return self.post_form("/signup", {k: v for k, v in data.items() if v is not None})

    def login(self, email: str, password: str = TEST_PASSWORD):
        return self.post_form("/login", {"email": email, "password": password})

    def logout(self):
        return self.post_form("/dashboard", {}, action="/logout")


def sign_in_page(page, email: str, password: str = TEST_PASSWORD) -> None:
    """Sign in through the form in a Playwright page, landing on the dashboard."""
    from playwright.sync_api import expect

    page.goto("/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))


@contextmanager
def serve_in_thread(app):
    """The app served on 127.0.0.1 on a free port, in a thread of this process; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
