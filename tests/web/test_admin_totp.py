"""Issue 11 item 8: admin sign-in with a second factor (TOTP). An admin enrols (QR code, secret,
a confirming code, recovery codes shown once) before the admin area opens; the area then needs a
session whose code was entered and that has not been idle; every admin request, page, form or
fragment, checks it. Codes are computed with pyotp from the secret the database holds."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from flask.cli import FlaskGroup
from sqlalchemy import select

from app.auth.two_factor import ADMIN_SEEN_AT, POLL_HEADER
from app.extensions import db
from app.models import Account, AuditLogEntry, RecoveryCode
from app.services import totp
from app.services.accounts import account_by_email, suspend
from tests.helpers import TEST_PASSWORD, Browser, csrf_token_from, second_factor_code

NEW_ADMIN = "new-admin@example.com"
ADMIN = "admin@example.com"
SETUP = "/auth/2fa/setup"
VERIFY = "/auth/2fa/verify"
SECRET_TEXT = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')
QR_CODE = re.compile(r'<img id="totp-qr-code" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')
RECOVERY_CODES = re.compile(r'<pre id="recovery-codes">(.*?)</pre>', re.S)
RECOVERY_CODE = re.compile(r"^[a-km-np-z2-9]{5}-[a-km-np-z2-9]{5}$")
HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; monkeypatch puts the old value back.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")


def flask(runner, *args):
    """Run `flask ARGS` as the `flask` executable does (a FlaskGroup pushing the app context)."""
    group = FlaskGroup(
        create_app=lambda: runner.app,
        add_default_commands=False,
        load_dotenv=False,
        set_debug_flag=False,
    )
    return runner.invoke(cli=group, args=list(args))


def path_of(response) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def next_of(url: str) -> str | None:
    return parse_qs(urlsplit(url).query).get("next", [None])[0]


def account_state(app, email: str) -> Account:
    with app.app_context():
        account = account_by_email(email)
        db.session.expunge(account)
        db.session.remove()
        return account


def wrong_code(secret: str) -> str:
    """Six digits that are none of the codes the server would accept now."""
    step = int(time.time()) // totp.STEP_SECONDS
    accepted = {pyotp.TOTP(secret).generate_otp(s) for s in range(step - 2, step + 3)}
    return next(f"{n:06d}" for n in range(123456, 10**6) if f"{n:06d}" not in accepted)


def enrol_through_pages(browser: Browser) -> tuple[str, list[str], str]:
    """Read the secret from the setup page, confirm with its current code; returns the secret,
    the recovery codes shown and that page."""
    page = browser.get(SETUP).get_data(as_text=True)
    secret = SECRET_TEXT.search(page).group(1).replace(" ", "")
    response = browser.post_form(SETUP, {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return secret, RECOVERY_CODES.search(html).group(1).split(), html


def idle(app, browser: Browser, seconds: int | None = None) -> None:
    """Leave the session without an admin request for `seconds` (default: past the timeout)."""
    seconds = app.config["ADMIN_IDLE_TIMEOUT_SECONDS"] + 1 if seconds is None else seconds
    with browser.client.session_transaction() as session:
        session[ADMIN_SEEN_AT] = int(time.time()) - seconds


def seen_at(browser: Browser) -> int:
    with browser.client.session_transaction() as session:
        return session[ADMIN_SEEN_AT]


def signed_in_at_the_code(app, email: str = ADMIN) -> Browser:
    """A client past the password of an enrolled admin, at the code page."""
    browser = Browser(app.test_client())
    response = browser.login(email, second_factor=False)
    assert response.status_code == 302 and path_of(response) == VERIFY
    return browser


def test_item8_an_admin_enrols_with_the_qr_code_before_the_admin_area_opens(app, make_account):
    make_account(NEW_ADMIN, admin=True, two_factor=False)
    browser = Browser(app.test_client())
    response = browser.login(NEW_ADMIN)
    assert response.status_code == 302 and path_of(response) == SETUP
    closed = browser.get("/admin/accounts")
    assert path_of(closed) == SETUP and next_of(closed.headers["Location"]) == "/admin/accounts"

    setup = closed.headers["Location"]
    page = browser.get(setup).get_data(as_text=True)
    secret = SECRET_TEXT.search(page).group(1).replace(" ", "")
    assert len(secret) == 32
    # The QR code is the otpauth URI of that secret, for this account, from OneKey.
    svg = base64.b64decode(QR_CODE.search(page).group(1))
    assert b"<svg" in svg
    with app.app_context():
        account = account_by_email(NEW_ADMIN)
        uri = totp.provisioning_uri(account, secret)
        assert totp.qr_code_data_uri(uri) == "data:image/svg+xml;base64," + QR_CODE.search(
            page
        ).group(1)
        # Stored encrypted: the database alone does not give the secret.
        assert secret not in account.totp_secret and totp.stored_secret(account) == secret
        db.session.remove()
    assert uri.startswith("otpauth://totp/OneKey:new-admin%40example.com?secret=" + secret)
    # A reload shows the same pending secret: a code already scanned still works.
    assert secret in browser.get(setup).get_data(as_text=True).replace(" ", "")

    refused = browser.post_form(setup, {"code": wrong_code(secret)})
    assert refused.status_code == 401
    assert "That code is not right" in refused.get_data(as_text=True)
    assert not account_state(app, NEW_ADMIN).has_second_factor
    assert path_of(browser.get("/admin/accounts")) == SETUP

    confirmed = browser.post_form(setup, {"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200
    html = confirmed.get_data(as_text=True)
    codes = RECOVERY_CODES.search(html).group(1).split()
    assert len(codes) == 10 and all(RECOVERY_CODE.match(code) for code in codes)
    assert 'href="/admin/accounts" role="button"' in html  # on to the page first asked for
    assert account_state(app, NEW_ADMIN).has_second_factor
    # Confirming proved the code: this session's admin area is open.
    assert browser.get("/admin/accounts").status_code == 200

    # Never shown again: the setup page now only leads on, and no page shows the secret.
    again = browser.get(SETUP)
    assert again.status_code == 302 and path_of(again) == VERIFY
    for path in (SETUP, VERIFY, "/admin/accounts", "/dashboard"):
        assert secret not in browser.get(path, follow_redirects=True).get_data(as_text=True)


def test_item8_recovery_codes_are_shown_once_stored_as_hmacs_and_work_once(app, make_account):
    make_account(NEW_ADMIN, admin=True, two_factor=False)
    first = Browser(app.test_client())
    first.login(NEW_ADMIN)
    _, codes, _ = enrol_through_pages(first)
    with app.app_context():
        hashes = db.session.scalars(select(RecoveryCode.code_hash)).all()
        db.session.remove()
    assert len(hashes) == 10 and all(len(h) == 64 for h in hashes)
    plain = {c.replace("-", "") for c in codes}
    assert not any(p in h for p in plain for h in hashes)
    for path in (SETUP, VERIFY, "/admin/accounts"):
        page = first.get(path, follow_redirects=True).get_data(as_text=True)
        assert not any(code in page for code in codes)

    # Typed in capitals and without the hyphen, it still is the code.
    second = signed_in_at_the_code(app, NEW_ADMIN)
    used = second.enter_code(codes[0].replace("-", "").upper())
    assert used.status_code == 302 and path_of(used) == "/dashboard"
    assert "You used a recovery code: 9 left." in second.get("/dashboard").get_data(as_text=True)
    assert second.get("/admin/accounts").status_code == 200

    third = signed_in_at_the_code(app, NEW_ADMIN)
    refused = third.enter_code(codes[0])
    assert refused.status_code == 401
    assert "used already" in refused.get_data(as_text=True)
    assert path_of(third.get("/admin/accounts")) == VERIFY
    assert third.enter_code(codes[1]).status_code == 302
    with app.app_context():
        assert totp.recovery_codes_left(account_by_email(NEW_ADMIN)) == 8
        db.session.remove()


def test_item8_wrong_codes_are_throttled_like_passwords(app, make_account):
    make_account(ADMIN, admin=True)
    with app.app_context():
        secret = totp.stored_secret(account_by_email(ADMIN))
        db.session.remove()
    browser = signed_in_at_the_code(app)
    for _ in range(app.config["SECOND_FACTOR_MAX_FAILURES"]):
        assert browser.enter_code(wrong_code(secret)).status_code == 401
    assert browser.enter_code("zzzzz-zzzzz").status_code == 429  # recovery codes count alike
    before = account_state(app, ADMIN).totp_last_step
    # Even the right code waits now, and is not used up by the refusal.
    throttled = browser.enter_code(second_factor_code(app, ADMIN))
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many wrong codes" in throttled.get_data(as_text=True)
    assert account_state(app, ADMIN).totp_last_step == before
    assert path_of(browser.get("/admin/accounts")) == VERIFY
    # Another admin is not held back by them.
    make_account("other-admin@example.com", admin=True)
    assert Browser(app.test_client()).login("other-admin@example.com").status_code == 302


def test_item8_a_code_is_refused_when_used_again(app, make_account):
    make_account(ADMIN, admin=True)
    code = second_factor_code(app, ADMIN)
    first = signed_in_at_the_code(app)
    assert path_of(first.enter_code(code)) == "/dashboard"
    step = account_state(app, ADMIN).totp_last_step
    # Seen over a shoulder, the same code, still within its 30 seconds, is of no use.
    second = signed_in_at_the_code(app)
    replayed = second.enter_code(code)
    assert replayed.status_code == 401
    assert "used already" in replayed.get_data(as_text=True)
    with app.app_context():
        earlier = pyotp.TOTP(totp.stored_secret(account_by_email(ADMIN))).generate_otp(step - 1)
        db.session.remove()
    assert second.enter_code(earlier).status_code == 401
    assert account_state(app, ADMIN).totp_last_step == step
    # The next code of the app is accepted.
    assert path_of(second.enter_code(second_factor_code(app, ADMIN))) == "/dashboard"
    assert account_state(app, ADMIN).totp_last_step > step


def test_item8_sign_in_returns_to_the_admin_page_asked_for(app, make_account):
    make_account(ADMIN, admin=True)
    browser = Browser(app.test_client())
    response = browser.post_form(
        "/login", {"email": ADMIN, "password": TEST_PASSWORD}, action="/login?next=/admin/refunds"
    )
    assert path_of(response) == VERIFY and next_of(response.headers["Location"]) == "/admin/refunds"
    done = browser.enter_code(second_factor_code(app, ADMIN), response.headers["Location"])
    assert done.headers["Location"] == "/admin/refunds"
    assert browser.get("/admin/refunds").status_code == 200
    # An open redirect is not one: the next page is a path on this site or nothing.
    evil = signed_in_at_the_code(app)
    done = evil.enter_code(second_factor_code(app, ADMIN), f"{VERIFY}?next=//evil.example/")
    assert done.headers["Location"] == "/dashboard"


def test_item8_an_idle_admin_session_enters_a_code_again(app, admin, make_account):
    customer_id = make_account("customer@example.com")
    page = f"/admin/accounts/{customer_id}"
    assert admin.get(page).status_code == 200
    # Each admin request moves the last activity on.
    timeout = app.config["ADMIN_IDLE_TIMEOUT_SECONDS"]
    idle(app, admin, timeout - 30)
    assert admin.get(page).status_code == 200
    assert seen_at(admin) >= int(time.time()) - 2

    token = csrf_token_from(admin.get(page).get_data(as_text=True))
    idle(app, admin)
    closed = admin.get(page)
    assert closed.status_code == 302 and path_of(closed) == VERIFY
    assert next_of(closed.headers["Location"]) == page
    # An admin action is checked too: nothing is done.
    action = admin.client.post(
        f"{page}/suspend",
        data={"csrf_token": token, "reason": "card testing"},
        headers={"Referer": f"http://localhost{page}"},
    )
    assert path_of(action) == VERIFY and next_of(action.headers["Location"]) == page
    assert account_state(app, "customer@example.com").status == "active"
    # The portal is not the admin area: it does not wait.
    assert admin.get("/dashboard").status_code == 200

    prompt = admin.get(closed.headers["Location"]).get_data(as_text=True)
    assert "Your admin session was idle" in prompt
    back = admin.enter_code(second_factor_code(app, ADMIN), closed.headers["Location"])
    assert back.status_code == 302 and back.headers["Location"] == page
    done = admin.post_form(page, {"reason": "card testing"}, action=f"{page}/suspend")
    assert done.status_code == 302
    assert account_state(app, "customer@example.com").status == "suspended"


def test_item8_an_expired_htmx_request_is_sent_to_the_code_page_not_swapped(
    app, admin, make_account
):
    token = csrf_token_from(admin.get("/admin/accounts").get_data(as_text=True))
    current = {**HX, "HX-Current-URL": "http://localhost/admin/accounts?q=bob"}
    # A poll is not activity: a page left open still goes idle.
    idle(app, admin, 60)
    polled = admin.get("/admin/accounts?q=bob", headers={**current, POLL_HEADER: "true"})
    assert polled.status_code == 200
    assert seen_at(admin) <= int(time.time()) - 59

    idle(app, admin)
    for response in (
        admin.get("/admin/accounts?q=bob", headers=current),
        admin.client.post("/admin/accounts/1/suspend", data={"csrf_token": token}, headers=current),
    ):
        assert response.status_code == 401 and response.get_data() == b""
        target = response.headers["HX-Redirect"]
        assert urlsplit(target).path == VERIFY and next_of(target) == "/admin/accounts?q=bob"

    make_account(NEW_ADMIN, admin=True, two_factor=False)
    newcomer = Browser(app.test_client())
    newcomer.login(NEW_ADMIN)
    response = newcomer.get("/admin/accounts", headers=HX)
    assert response.status_code == 401 and urlsplit(response.headers["HX-Redirect"]).path == SETUP


def test_item8_a_customer_is_not_asked_for_a_second_factor(app, make_account, browser):
    make_account("customer@example.com")
    response = browser.login("customer@example.com", second_factor=False)
    assert response.headers["Location"] == "/dashboard"
    assert browser.get("/dashboard").status_code == 200
    for path in (SETUP, VERIFY, "/admin/accounts"):
        assert browser.get(path).status_code == 404
    assert account_state(app, "customer@example.com").totp_secret is None
    # Nor is a suspended admin, who may still see their balance but not the admin area.
    admin_id = make_account(ADMIN, admin=True)
    with app.app_context():
        suspend(db.session.get(Account, admin_id), reason="left the team", actor_id=None)
        db.session.commit()
    suspended = Browser(app.test_client())
    assert suspended.login(ADMIN, second_factor=False).headers["Location"] == "/dashboard"
    for path in (SETUP, VERIFY, "/admin/accounts"):
        assert suspended.get(path).status_code == 404


def test_item8_every_admin_request_rechecks_admin_active_and_enrolled(app, admin):
    assert admin.get("/admin/accounts").status_code == 200
    with app.app_context():
        account = account_by_email(ADMIN)
        account.is_admin = False
        db.session.commit()
    assert admin.get("/admin/accounts").status_code == 404
    with app.app_context():
        account = account_by_email(ADMIN)
        account.is_admin = True
        account.totp_enabled_at = None  # no longer enrolled (the session left as it was)
        db.session.commit()
    assert path_of(admin.get("/admin/accounts")) == SETUP


def test_item8_reset_2fa_lets_a_locked_out_admin_enrol_again(app, admin, runner):
    assert admin.get("/admin/accounts").status_code == 200
    result = flask(runner, "users", "reset-2fa", ADMIN)
    assert result.exit_code == 0, result.output
    assert f"second factor of {ADMIN} removed" in result.output
    # Its sessions are over (a thief's too): the admin area is a 404 again, the portal asks to sign in.
    assert admin.get("/admin/accounts").status_code == 404
    assert path_of(admin.get("/dashboard")) == "/login"
    state = account_state(app, ADMIN)
    assert state.totp_secret is None and not state.has_second_factor
    with app.app_context():
        assert db.session.scalars(select(RecoveryCode)).all() == []
        entry = db.session.scalars(select(AuditLogEntry)).one()
        assert (entry.action, entry.actor_id) == ("account.second_factor_reset", None)
        assert entry.target_account_id == state.id
        db.session.remove()
    # The next sign-in enrols a new one.
    again = Browser(app.test_client())
    assert path_of(again.login(ADMIN)) == SETUP
    # Bad input changes nothing and says why.
    nothing = flask(runner, "users", "reset-2fa", "customer@example.com")
    assert nothing.exit_code == 1 and "no account with email" in nothing.output
    again_reset = flask(runner, "users", "reset-2fa", ADMIN)
    assert again_reset.exit_code == 1 and "has no second factor" in again_reset.output


def test_item8_ensure_admin_leads_the_first_sign_in_to_enrolment(app, runner):
    result = flask(runner, "users", "ensure-admin", "--email", "ops@example.com")
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output).group(1)
    assert "second factor" in result.output
    browser = Browser(app.test_client())
    assert path_of(browser.login("ops@example.com", password)) == SETUP
    _, codes, _ = enrol_through_pages(browser)
    assert len(codes) == 10
    assert browser.get("/admin/accounts").status_code == 200


def test_item8_a_secret_encrypted_under_another_key_hash_secret_needs_a_reset(
    app, make_account, monkeypatch
):
    make_account(ADMIN, admin=True)
    make_account(NEW_ADMIN, admin=True, two_factor=False)
    with app.app_context():
        secret = totp.stored_secret(account_by_email(ADMIN))
        pending = totp.pending_secret(account_by_email(NEW_ADMIN))
        db.session.commit()
    monkeypatch.setitem(app.config, "KEY_HASH_SECRET", "another-key-hash-secret")
    browser = signed_in_at_the_code(app)
    refused = browser.enter_code(pyotp.TOTP(secret).now())
    assert refused.status_code == 401
    assert "cannot be read: reset it" in refused.get_data(as_text=True)
    # Nothing was enrolled with a pending one: the setup page shows a new secret it can read.
    newcomer = Browser(app.test_client())
    newcomer.login(NEW_ADMIN)
    page = newcomer.get(SETUP).get_data(as_text=True)
    shown = SECRET_TEXT.search(page).group(1).replace(" ", "")
    assert shown != pending
    assert newcomer.post_form(SETUP, {"code": pyotp.TOTP(shown).now()}).status_code == 200
