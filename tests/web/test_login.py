"""Sign-in, sign-out, throttling, sessions and passwords."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from app.extensions import db, get_queue
from app.models import Account, ApiKey
from tests.helpers import TEST_PASSWORD, csrf_token_from

SIGN_IN_FAILED = "That email and password do not match an account."


def test_login_and_logout(browser, make_account):
    make_account("user@example.com")
    response = browser.login("USER@example.com")
    assert response.status_code == 302
    assert browser.get("/dashboard").status_code == 200
    assert browser.logout().status_code == 302
    assert browser.get("/dashboard").status_code == 302


def test_logout_ends_the_session_for_a_copied_cookie_too(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    token = csrf_token_from(browser.get("/keys").get_data(as_text=True))
    name = app.config["SESSION_COOKIE_NAME"]
    copied = browser.client.get_cookie(name).value
    assert browser.logout().status_code == 302
    replayed = app.test_client()
    replayed.set_cookie(name, copied)
    assert replayed.get("/keys").status_code == 302
    response = replayed.post("/keys", data={"csrf_token": token, "name": "stolen"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_logout_ends_the_accounts_other_sessions(app, make_account):
    from tests.helpers import Browser

    make_account("user@example.com")
    first, second = Browser(app.test_client()), Browser(app.test_client())
    first.login("user@example.com")
    second.login("user@example.com")
    first.logout()
    assert second.get("/dashboard").status_code == 302


def test_a_session_ends_at_its_absolute_lifetime_however_active(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    lifetime = app.config["SESSION_ABSOLUTE_LIFETIME_SECONDS"]
    with browser.client.session_transaction() as session:
        session["signed_in_at"] -= lifetime - 60
    assert browser.get("/dashboard").status_code == 200
    with browser.client.session_transaction() as session:
        session["signed_in_at"] -= 120
    response = browser.get("/dashboard")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_session_without_a_sign_in_time_is_signed_out(browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    with browser.client.session_transaction() as session:
        session.pop("signed_in_at", None)
    assert browser.get("/dashboard").status_code == 302


def test_wrong_password_and_unknown_email_get_the_same_message(browser, make_account):
    make_account("user@example.com")
    wrong = browser.login("user@example.com", "not the right password")
    unknown = browser.login("nobody@example.com", "not the right password")
    assert wrong.status_code == unknown.status_code == 401
    assert SIGN_IN_FAILED in wrong.get_data(as_text=True)
    assert SIGN_IN_FAILED in unknown.get_data(as_text=True)


def test_login_is_throttled_per_account(app, browser, make_account):
    make_account("user@example.com")
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit):
        assert browser.login("user@example.com", "wrong password!").status_code == 401
    # Even the right password is refused while throttled, and the answer says when to retry.
    response = browser.login("user@example.com")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many sign-in attempts" in response.get_data(as_text=True)
    assert browser.get("/dashboard").status_code == 302


@pytest.mark.parametrize("spelling", ["bob@ｅxample.com", " BOB@Example.COM", "bob@EXAMPLE.com"])
def test_login_throttle_counts_every_spelling_of_an_address(app, browser, make_account, spelling):
    """The throttle keys on the address the account is found by, not on what was typed."""
    make_account("bob@example.com")
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        assert browser.login("bob@example.com", "wrong password!").status_code == 401
    assert browser.login(spelling).status_code == 429
    assert browser.get("/dashboard").status_code == 302


def test_login_throttle_counts_failures_under_any_spelling(app, browser, make_account):
    make_account("bob@example.com")
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        assert browser.login("bob@ｅxample.com", "wrong password!").status_code == 401
    assert browser.login("bob@example.com").status_code == 429


def test_login_is_throttled_per_address(app, browser, make_account):
    make_account("user@example.com")
    limit = app.config["LOGIN_MAX_FAILURES_PER_IP"]
    for n in range(limit):
        browser.login(f"guess{n}@example.com", "wrong password!")
    assert browser.login("user@example.com").status_code == 429


def test_throttling_is_shared_through_redis(app, make_account):
    """Another client (another web process) sees the same failure count."""
    from tests.helpers import Browser

    make_account("user@example.com")
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        Browser(app.test_client()).login("user@example.com", "wrong password!")
    assert Browser(app.test_client()).login("user@example.com").status_code == 429


def test_session_is_rotated_on_login(app, client, make_account):
    from tests.helpers import Browser

    make_account("user@example.com")
    browser = Browser(client)
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    browser.login("user@example.com")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert "_user_id" in session


def test_session_cookie_is_hardened(browser, make_account):
    make_account("user@example.com")
    response = browser.login("user@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_open_redirect_after_login_is_ignored(browser, make_account):
    make_account("user@example.com")
    response = browser.post_form(
        "/login",
        {"email": "user@example.com", "password": TEST_PASSWORD},
        action="/login?next=https://evil.example/",
    )
    assert response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize(
    "target",
    [
        "/\r\nX-Injected: 1",
        "/keys\nX-Injected: 1",
        "/\x00",
        "/\tkeys",
        "/ keys",
        "/\\evil.example",
        "/\\/evil.example",
        "//evil.example",
        "///evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "keys",
        "/k\u00e9ys",
        "/\u2028",
    ],
)
def test_next_after_login_is_only_a_clean_path_on_this_site(browser, make_account, target):
    make_account("user@example.com")
    response = browser.post_form(
        "/login",
        {"email": "user@example.com", "password": TEST_PASSWORD},
        action="/login?" + urlencode({"next": target}),
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    assert "X-Injected" not in response.headers


def test_the_injected_header_url_of_the_attack_signs_in_to_the_dashboard(browser, make_account):
    make_account("user@example.com")
    response = browser.post_form(
        "/login",
        {"email": "user@example.com", "password": TEST_PASSWORD},
        action="/login?next=/%0d%0aX-Injected:%201",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


def test_next_after_login_keeps_a_path_with_its_query(browser, make_account):
    make_account("user@example.com")
    response = browser.post_form(
        "/login",
        {"email": "user@example.com", "password": TEST_PASSWORD},
        action="/login?" + urlencode({"next": "/usage?page=2&model=gpt-4o-mini%2B"}),
    )
    assert response.headers["Location"] == "/usage?page=2&model=gpt-4o-mini%2B"


def test_logout_needs_csrf(client, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    assert client.post("/logout").status_code == 400
    assert browser.get("/dashboard").status_code == 200


def test_password_change_ends_other_sessions(app, make_account):
    from tests.helpers import Browser

    make_account("user@example.com")
    first, second = Browser(app.test_client()), Browser(app.test_client())
    first.login("user@example.com")
    second.login("user@example.com")
    response = first.post_form(
        "/account/password",
        {"current_password": TEST_PASSWORD, "password": "a brand new passphrase"},
    )
    assert response.status_code == 302
    assert first.get("/dashboard").status_code == 200
    assert second.get("/dashboard").status_code == 302
    assert Browser(app.test_client()).login("user@example.com").status_code == 401
    assert (
        Browser(app.test_client()).login("user@example.com", "a brand new passphrase").status_code
        == 302
    )


def test_password_change_needs_the_current_password(app, browser, make_account):
    account_id = make_account("user@example.com")
    browser.login("user@example.com")
    with app.app_context():
        before = db.session.get(Account, account_id).password_hash
    response = browser.post_form(
        "/account/password",
        {"current_password": "wrong one!", "password": "a brand new passphrase"},
    )
    assert response.status_code == 400
    assert "current password is not correct" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Account, account_id).password_hash == before


def test_password_reset_by_emailed_link(browser, make_account, run_mail_jobs):
    make_account("user@example.com")
    response = browser.post_form("/password/forgot", {"email": "user@example.com"})
    assert response.status_code == 302
    mail = run_mail_jobs()
    link = re.search(r"http://localhost(/password/reset/\S+)", mail).group(1)
    response = browser.post_form(link, {"password": "a brand new passphrase"})
    assert response.status_code == 302
    assert browser.login("user@example.com", "a brand new passphrase").status_code == 302
    # The link works once.
    assert browser.get(link).status_code == 302


def test_reset_link_uses_the_public_base_url_whatever_the_host_header(
    app, browser, make_account, run_mail_jobs, monkeypatch
):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://onekey.example")
    make_account("user@example.com")
    token = csrf_token_from(browser.get("/password/forgot").get_data(as_text=True))
    # The session (which the CSRF token is checked against) goes along to the forged host.
    cookie = browser.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    browser.client.set_cookie(cookie.key, cookie.value, domain="attacker.example")
    response = browser.client.post(
        "/password/forgot",
        data={"csrf_token": token, "email": "user@example.com"},
        headers={"Host": "attacker.example"},
    )
    assert response.status_code == 302
    mail = run_mail_jobs()
    assert "https://onekey.example/password/reset/" in mail
    assert "attacker.example" not in mail


def test_password_reset_does_not_reveal_unknown_addresses(app, browser, caplog):
    response = browser.post_form(
        "/password/forgot", {"email": "nobody@example.com"}, follow_redirects=True
    )
    assert "If an account uses that address" in response.get_data(as_text=True)
    with app.app_context():
        assert get_queue("default").count == 0


RESET_SENT = "If an account uses that address, we have sent it a link to reset the password."


def test_password_reset_mail_is_limited_per_address(app, browser, make_account):
    make_account("user@example.com")
    limit = app.config["PASSWORD_RESET_MAX_PER_EMAIL"]
    for _ in range(limit + 2):
        response = browser.post_form(
            "/password/forgot", {"email": "User@example.com"}, follow_redirects=True
        )
        # Past the limit the answer is the same; only the mail stops.
        assert response.status_code == 200
        assert RESET_SENT in response.get_data(as_text=True)
    with app.app_context():
        assert get_queue("default").count == limit


def test_password_reset_mail_limit_counts_every_spelling_of_an_address(app, browser, make_account):
    make_account("bob@example.com")
    limit = app.config["PASSWORD_RESET_MAX_PER_EMAIL"]
    spellings = ["bob@example.com", "bob@ｅxample.com", " BOB@Example.COM"]
    for n in range(limit + 2):
        browser.post_form("/password/forgot", {"email": spellings[n % len(spellings)]})
    with app.app_context():
        assert get_queue("default").count == limit


def test_password_reset_mail_is_limited_per_client_address(app, browser, make_account, monkeypatch):
    monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_PER_IP", 3)
    make_account("user@example.com")
    here = {"environ_base": {"REMOTE_ADDR": "203.0.113.7"}}
    for n in range(3):
        browser.post_form("/password/forgot", {"email": f"guess{n}@example.com"}, **here)
    response = browser.post_form(
        "/password/forgot", {"email": "user@example.com"}, follow_redirects=True, **here
    )
    assert RESET_SENT in response.get_data(as_text=True)
    with app.app_context():
        assert get_queue("default").count == 0
    elsewhere = {"environ_base": {"REMOTE_ADDR": "198.51.100.9"}}
    browser.post_form("/password/forgot", {"email": "user@example.com"}, **elsewhere)
    with app.app_context():
        assert get_queue("default").count == 1


def test_forged_reset_token_is_refused(browser):
    response = browser.get("/password/reset/not-a-real-token")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/password/forgot")
