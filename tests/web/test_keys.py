"""API keys in the portal: shown once, only a keyed hash stored, revocation, ownership."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey
from app.services import accounts
from app.services.keys import hash_key
from tests.helpers import without_csrf_tokens

KEY_PATTERN = re.compile(r"ok-[A-Za-z0-9_-]{43}")


def key_status(app, plaintext: str) -> int:
    """What the proxy answers the key with: GET /v1/key, the gateway's own lookup."""
    response = app.test_client().get("/v1/key", headers={"Authorization": f"Bearer {plaintext}"})
    return response.status_code


def create_key(browser, **fields):
    data = {"name": "laptop", **fields}
    return browser.post_form("/keys", data)


def test_key_is_shown_once_and_only_its_hash_is_stored(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    response = create_key(browser)
    assert response.status_code == 201
    shown = KEY_PATTERN.findall(response.get_data(as_text=True))
    assert len(set(shown)) == 1
    plaintext = shown[0]
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        assert key.key_hash == hash_key(plaintext)
        assert key.last4 == plaintext[-4:]
        for column in ApiKey.__table__.columns:
            assert plaintext not in str(getattr(key, column.key))
    # The key works as the proxy reads it.
    assert key_status(app, plaintext) == 200
    again = browser.get("/keys").get_data(as_text=True)
    assert plaintext not in again
    assert f"ok-…{plaintext[-4:]}" in again
    assert plaintext not in browser.get("/dashboard").get_data(as_text=True)


def test_htmx_create_returns_the_panel_fragment(browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    response = browser.post_form("/keys", {"name": "ci"}, headers={"HX-Request": "true"})
    assert response.status_code == 201
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="keys-panel">')
    assert "<html" not in html
    assert KEY_PATTERN.search(html)


def test_key_with_limit_models_and_expiry(app, browser, make_account, catalog):
    make_account("user@example.com")
    browser.login("user@example.com")
    response = browser.client.post(
        "/keys",
        data={
            "csrf_token": _token(browser),
            "name": "capped",
            "limit": "12.5",
            "allowed_models": ["gpt-4o-mini", "claude-haiku-4-5"],
            "expires_on": "2099-01-31",
        },
    )
    assert response.status_code == 201
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        assert key.limit_nanocredits == 12_500_000_000
        assert key.allowed_models == ["claude-haiku-4-5", "gpt-4o-mini"]
        assert key.expires_at.year == 2099


def _token(browser) -> str:
    from tests.helpers import csrf_token_from

    return csrf_token_from(browser.get("/keys").get_data(as_text=True))


def test_bad_key_input_is_refused_and_nothing_written(app, browser, make_account, catalog):
    make_account("user@example.com")
    browser.login("user@example.com")
    cases = [
        ({"name": ""}, "This field is required"),
        ({"name": "x" * 101}, "Field cannot be longer than 100 characters"),
        ({"name": "ok", "limit": "abc"}, "Enter the limit in credits"),
        ({"name": "ok", "limit": "-5"}, "credit limit must be a positive amount"),
        ({"name": "ok", "limit": "1e3"}, "Enter the limit in credits"),
        ({"name": "ok", "expires_on": "2001-01-01"}, "expiry must be in the future"),
        ({"name": "ok", "expires_on": "not-a-date"}, "Not a valid date value"),
        ({"name": "ok", "allowed_models": "no-such-model"}, "is not a valid choice"),
    ]
    for fields, message in cases:
        response = browser.post_form("/keys", fields)
        assert response.status_code == 400, fields
        assert message in response.get_data(as_text=True), fields
    with app.app_context():
        assert db.session.scalar(select(ApiKey)) is None


def test_revoke_takes_effect_at_once(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    plaintext = KEY_PATTERN.search(create_key(browser).get_data(as_text=True)).group(0)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id))
    response = browser.post_form(
        "/keys", {}, action=f"/keys/{key_id}/revoke", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response.get_data(as_text=True).lstrip().startswith('<div id="keys-panel">')
    assert "revoked" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ApiKey.revoked_at)) is not None
    assert key_status(app, plaintext) == 401  # refused by the proxy at once


def test_revoke_without_javascript_redirects_back_to_the_keys(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    create_key(browser)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id))
    response = browser.post_form("/keys", {}, action=f"/keys/{key_id}/revoke")
    assert response.status_code == 302
    assert response.headers["Location"] == "/keys"
    assert "is revoked" in browser.get("/keys").get_data(as_text=True)


def test_another_accounts_key_is_a_plain_404(app, browser, make_account):
    make_account("owner@example.com")
    make_account("other@example.com")
    browser.login("owner@example.com")
    create_key(browser)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id))
    browser.logout()
    browser.login("other@example.com")
    response = browser.post_form("/keys", {}, action=f"/keys/{key_id}/revoke")
    unknown = browser.post_form("/keys", {}, action="/keys/999999/revoke")
    assert response.status_code == unknown.status_code == 404
    # The pages differ only in the CSRF token, which is signed with the current second.
    assert without_csrf_tokens(response.get_data(as_text=True)) == without_csrf_tokens(
        unknown.get_data(as_text=True)
    )
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is None


def test_keys_need_sign_in(client):
    assert client.get("/keys").status_code == 302
    assert client.post("/keys", data={"name": "x"}).status_code in (302, 400)


def test_suspended_account_cannot_create_keys(app, browser, make_account):
    account_id = make_account("user@example.com")
    browser.login("user@example.com")
    with app.app_context():
        accounts.suspend(db.session.get(Account, account_id), reason="test", actor_id=None)
        db.session.commit()
    # Suspension ended the session; the account may sign in again to see its status.
    assert browser.get("/keys").status_code == 302
    assert browser.login("user@example.com").status_code == 302
    page = browser.get("/dashboard").get_data(as_text=True)
    assert "Your account is suspended" in page
    response = browser.post_form("/dashboard", {"name": "x"}, action="/keys")
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(ApiKey)) is None
