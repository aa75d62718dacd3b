"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

from werkzeug.serving import make_server

CSRF_INPUT = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)
# The token is signed with a timestamp, so two renderings a second apart differ in it.
CSRF_TOKEN_VALUE = re.compile(
    r'(name="csrf_token"(?: type="hidden")? value="|"X-CSRFToken": ")[^"]+'
)
TEST_PASSWORD = "a long enough passphrase"
SECOND_FACTOR_PAGE = "/auth/2fa/verify"
# The apps serve_in_thread is serving, by base URL: a Playwright page's admin finds its codes.
SERVED_APPS = {}


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

    def login(self, email: str, password: str = TEST_PASSWORD, *, second_factor: bool = True):
        """Sign in. An enrolled admin is asked for a code next, and enters the current one of
        their app (see `second_factor_code`), unless `second_factor` is False: then the answer
        is the password's, sending to the code page."""
        response = self.post_form("/login", {"email": email, "password": password})
        location = response.headers.get("Location", "")
        if second_factor and urlsplit(location).path == SECOND_FACTOR_PAGE:
            return self.enter_code(second_factor_code(self.client.application, email), location)
        return response

    def enter_code(self, code: str, page: str = SECOND_FACTOR_PAGE):
        return self.post_form(page, {"code": code})

    def logout(self):
        return self.post_form("/dashboard", {}, action="/logout")


def enrol_second_factor(account) -> list[str]:
    """Enrol an admin's second factor through the service, as the setup page does, with a code
    of an hour ago: an admin who enrolled earlier, whose codes of now are all unused. Runs in the
    caller's app context (the caller commits); returns the recovery codes."""
    import pyotp

    from app.services import totp

    enrolled_at = time.time() - 3600
    secret = totp.pending_secret(account)
    code = pyotp.TOTP(secret, interval=totp.STEP_SECONDS).at(enrolled_at)
    return totp.confirm_enrolment(account, code, now=enrolled_at)


def second_factor_code(app, email: str) -> str:
    """The code the admin's app shows, computed by pyotp from the secret the database holds.

    A code is accepted once, and the server accepts the step after this one too: so this step's
    code, or the next step's when this one's was used (a second sign-in within 30 seconds), or,
    when both were, the next step's after waiting for this one to end.
    """
    import pyotp

    from app.extensions import db
    from app.services import totp
    from app.services.accounts import account_by_email

    while True:
        with app.app_context():
            account = account_by_email(email)
            assert account is not None and account.has_second_factor, f"{email} is not enrolled"
            secret, last_step = totp.stored_secret(account), account.totp_last_step
            db.session.remove()
        now = time.time()
        step = int(now) // totp.STEP_SECONDS
        for candidate in (step, step + 1):
            if last_step is None or candidate > last_step:
                return pyotp.TOTP(secret).generate_otp(candidate)
        time.sleep(totp.STEP_SECONDS - now % totp.STEP_SECONDS + 0.05)


def sign_in_page(page, email: str, password: str = TEST_PASSWORD) -> None:
    """Sign in through the form in a Playwright page, landing on the dashboard; an enrolled admin
    enters the current code of their app when asked."""
    from playwright.sync_api import expect

    page.goto("/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/dashboard$|{SECOND_FACTOR_PAGE}(\?.*)?$"))
    if urlsplit(page.url).path == SECOND_FACTOR_PAGE:
        parts = urlsplit(page.url)
        app = SERVED_APPS[f"{parts.scheme}://{parts.netloc}"]
        page.get_by_label("Authentication code").fill(second_factor_code(app, email))
        page.get_by_role("main").get_by_role("button", name="Verify").click()
        expect(page).to_have_url(re.compile(r"/dashboard$"))


@contextmanager
def serve_in_thread(app):
    """The app served on 127.0.0.1 on a free port, in a thread of this process; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    SERVED_APPS[url] = app
    try:
        yield url
    finally:
        SERVED_APPS.pop(url, None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
