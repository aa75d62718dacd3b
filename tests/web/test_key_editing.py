"""Issue 10 item 9: a key is edited after creation (name, credit limit, limit reset, expiry,
allowed models), paused and resumed in the portal; bad input changes nothing; only the key's
owner, with an active account, can do it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey
from app.models.types import utcnow
from app.services import accounts, holds, ledger
from app.services.key_periods import period_start
from app.services.keys import create_key
from app.services.money import credits_to_nanos
from tests.helpers import without_csrf_tokens

CREDIT = 10**9
EMAIL = "owner@example.com"


@pytest.fixture
def owner(app, browser, make_account, catalog):
    """(account id, key id) of a signed-in customer with one key, "laptop", and 10 credits."""
    account_id = make_account(EMAIL)
    with app.app_context():
        account = db.session.get(Account, account_id)
        ledger.grant_credits(account_id, 10 * CREDIT, note="test", idempotency_key="grant-owner")
        key, _ = create_key(account, name="laptop")
        db.session.commit()
        key_id = key.id
    browser.login(EMAIL)
    return account_id, key_id


def key_row(app, key_id: int) -> dict:
    """Every column of the key, to compare before and after."""
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        return {c.key: getattr(key, c.key) for c in ApiKey.__table__.columns}


def edit(browser, key_id: int, htmx: bool = True, **fields):
    """Post the edit form of the key with `fields` (unprefixed names), as the page would."""
    data = {
        "name": "laptop",
        "limit": "",
        "limit_reset": "",
        "expires_on": "",
        **fields,
    }
    posted = {f"key{key_id}-{name}": value for name, value in data.items()}
    headers = {"HX-Request": "true"} if htmx else {}
    return browser.post_form("/keys", posted, action=f"/keys/{key_id}", headers=headers)


def test_issue10_9_each_field_of_a_key_can_be_edited(app, browser, owner):
    _, key_id = owner
    response = edit(
        browser,
        key_id,
        name="  build server ",
        limit="12.5",
        limit_reset="weekly",
        expires_on="2099-03-31",
        allowed_models=["gpt-4o-mini", "claude-haiku-4-5"],
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    # The saved row comes back alone, to be swapped in place of the form.
    assert html.lstrip().startswith(f'<tr id="key-{key_id}">')
    assert "build server" in html and "12.50 a week" in html
    key = key_row(app, key_id)
    assert key["name"] == "build server"
    assert key["limit_nanocredits"] == 12_500_000_000
    assert key["limit_reset"] == "weekly"
    assert key["period_started_at"] == period_start("weekly", utcnow())
    assert key["expires_at"].date().isoformat() == "2099-03-31"
    assert key["allowed_models"] == ["claude-haiku-4-5", "gpt-4o-mini"]

    # Then each back: no limit, no reset, no expiry, every model.
    assert edit(browser, key_id, name="build server").status_code == 200
    key = key_row(app, key_id)
    assert key["limit_nanocredits"] is None
    assert key["limit_reset"] is None and key["period_started_at"] is None
    assert key["expires_at"] is None
    assert key["allowed_models"] is None


def test_issue10_9_the_edit_form_opens_in_place_filled_in_from_the_key(app, browser, owner):
    _, key_id = owner
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        key.limit_nanocredits = credits_to_nanos("7.25")
        key.limit_reset = "monthly"
        key.allowed_models = ["gpt-4o"]
        key.expires_at = datetime(2099, 1, 2, 23, 59, 59, tzinfo=UTC)
        db.session.commit()
    response = browser.get(f"/keys/{key_id}/edit", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="key-{key_id}" class="key-editing">')
    assert f'name="key{key_id}-name"' in html and 'value="laptop"' in html
    assert 'value="7.25"' in html
    assert re.search(r'<option selected value="monthly">|<option value="monthly" selected', html)
    assert 'value="2099-01-02"' in html
    # The models are a checklist of checkboxes, the key's own ticked, not a multi-select.
    assert "<select multiple" not in html and "multiple" not in html
    ticked = re.findall(r'<input checked[^>]*value="([^"]+)"', html) or re.findall(
        r'<input[^>]*type="checkbox"[^>]*value="([^"]+)"[^>]*checked', html
    )
    assert ticked == ["gpt-4o"]
    assert html.count('type="checkbox"') > 10
    # Without JavaScript the Edit link is a page of its own, the form open in the table.
    page = browser.get(f"/keys/{key_id}/edit")
    assert page.status_code == 200
    assert "<h1>API keys</h1>" in page.get_data(as_text=True)
    assert 'class="key-editing"' in page.get_data(as_text=True)
    # Cancel puts the row back.
    row = browser.get(f"/keys/{key_id}", headers={"HX-Request": "true"})
    assert row.get_data(as_text=True).lstrip().startswith(f'<tr id="key-{key_id}">')


def test_issue10_9_an_unchanged_expiry_keeps_its_exact_time(app, browser, owner):
    _, key_id = owner
    exact = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    with app.app_context():
        db.session.get(ApiKey, key_id).expires_at = exact
        db.session.commit()
    assert edit(browser, key_id, name="renamed", expires_on=exact.date().isoformat()).status_code
    key = key_row(app, key_id)
    assert key["name"] == "renamed" and key["expires_at"] == exact


def test_issue10_9_the_create_form_has_the_checklist_and_the_reset(app, browser, owner):
    html = browser.get("/keys").get_data(as_text=True)
    assert "<select multiple" not in html
    assert 'id="allowed_models"' in html and 'name="allowed_models" type="checkbox"' in html
    assert "data-model-filter hidden" in html  # keys.js reveals the filter
    assert 'name="limit_reset"' in html
    response = browser.post_form(
        "/keys",
        {
            "name": "daily",
            "limit": "2",
            "limit_reset": "daily",
            "allowed_models": ["gpt-4o-mini"],
        },
    )
    assert response.status_code == 201
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.name == "daily"))
        assert key.limit_reset == "daily"
        assert key.period_started_at == period_start("daily", utcnow())
        assert key.allowed_models == ["gpt-4o-mini"]


BAD_EDITS = [
    ({"name": ""}, "This field is required"),
    ({"name": "x" * 101}, "Field cannot be longer than 100 characters"),
    ({"limit": "abc"}, "Enter the limit in credits"),
    ({"limit": "1e3"}, "Enter the limit in credits"),
    ({"limit": "-5"}, "credit limit must be a positive amount"),
    ({"limit": "0"}, "credit limit must be a positive amount"),
    ({"limit_reset": "daily"}, "Set a credit limit for it to reset"),
    ({"limit": "5", "limit_reset": "hourly"}, "Not a valid choice"),
    ({"expires_on": "2001-01-01"}, "expiry must be in the future"),
    ({"expires_on": "not-a-date"}, "Not a valid date value"),
    ({"allowed_models": "no-such-model"}, "is not a valid choice"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_EDITS)
def test_issue10_9_a_bad_edit_is_refused_and_changes_nothing(app, browser, owner, fields, message):
    _, key_id = owner
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        key.limit_nanocredits = 3 * CREDIT
        key.allowed_models = ["gpt-4o"]
        db.session.commit()
    before = key_row(app, key_id)
    response = edit(browser, key_id, **{"name": "renamed", **fields})
    assert response.status_code == 400, fields
    html = response.get_data(as_text=True)
    assert message in html, fields
    # The form comes back open, with what was typed, to correct it.
    assert html.lstrip().startswith(f'<tr id="key-{key_id}" class="key-editing">')
    assert key_row(app, key_id) == before
    # Without JavaScript: the whole page, the form open with the error.
    page = edit(browser, key_id, htmx=False, **{"name": "renamed", **fields})
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    assert key_row(app, key_id) == before


def test_issue10_9_another_customers_key_is_a_plain_404(app, browser, owner, make_account):
    _, key_id = owner
    make_account("other@example.com")
    browser.logout()
    browser.login("other@example.com")
    before = key_row(app, key_id)
    for method, path in [
        ("get", f"/keys/{key_id}/edit"),
        ("get", f"/keys/{key_id}"),
        ("post", f"/keys/{key_id}"),
        ("post", f"/keys/{key_id}/pause"),
        ("post", f"/keys/{key_id}/resume"),
    ]:
        unknown = path.replace(str(key_id), "999999")
        if method == "get":
            theirs, missing = browser.get(path), browser.get(unknown)
        else:
            data = {f"key{key_id}-name": "mine now"}
            theirs = browser.post_form("/keys", data, action=path)
            missing = browser.post_form("/keys", data, action=unknown)
        assert theirs.status_code == missing.status_code == 404, path
        assert without_csrf_tokens(theirs.get_data(as_text=True)) == without_csrf_tokens(
            missing.get_data(as_text=True)
        )
    assert key_row(app, key_id) == before


def test_issue10_9_a_suspended_account_cannot_edit_pause_or_resume(app, browser, owner):
    account_id, key_id = owner
    with app.app_context():
        accounts.suspend(db.session.get(Account, account_id), reason="test", actor_id=None)
        db.session.commit()
    browser.login(EMAIL)  # suspension ended the session; a suspended account may sign in
    page = browser.get("/keys").get_data(as_text=True)
    assert "Edit laptop" not in page and "Pause laptop" not in page
    before = key_row(app, key_id)
    opened = browser.get(f"/keys/{key_id}/edit", headers={"HX-Request": "true"})
    assert opened.status_code == 403
    response = edit(browser, key_id, name="renamed", limit="1")
    assert response.status_code == 403
    assert "suspended: it cannot change API keys" in response.get_data(as_text=True)
    for action in ("pause", "resume"):
        response = browser.post_form(
            "/keys", {}, action=f"/keys/{key_id}/{action}", headers={"HX-Request": "true"}
        )
        assert response.status_code == 403, action
        assert "suspended: it cannot change API keys" in response.get_data(as_text=True)
    assert key_row(app, key_id) == before


def test_issue10_9_pause_and_resume_from_the_portal(app, browser, owner):
    _, key_id = owner
    response = browser.post_form(
        "/keys", {}, action=f"/keys/{key_id}/pause", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="key-{key_id}">')
    assert "status-paused" in html and "Resume laptop" in html
    assert key_row(app, key_id)["paused_at"] is not None
    # Pausing twice changes nothing; resuming brings it back, without JavaScript too.
    paused_at = key_row(app, key_id)["paused_at"]
    browser.post_form("/keys", {}, action=f"/keys/{key_id}/pause", headers={"HX-Request": "true"})
    assert key_row(app, key_id)["paused_at"] == paused_at
    response = browser.post_form("/keys", {}, action=f"/keys/{key_id}/resume")
    assert response.status_code == 302 and response.headers["Location"] == "/keys"
    assert "is working again" in browser.get("/keys").get_data(as_text=True)
    assert key_row(app, key_id)["paused_at"] is None


def test_issue10_9_a_revoked_key_cannot_be_edited_or_paused(app, browser, owner):
    _, key_id = owner
    browser.post_form("/keys", {}, action=f"/keys/{key_id}/revoke")
    before = key_row(app, key_id)
    assert edit(browser, key_id, name="back").status_code == 400
    response = browser.post_form(
        "/keys", {}, action=f"/keys/{key_id}/pause", headers={"HX-Request": "true"}
    )
    assert response.status_code == 400 and "revoked" in response.get_data(as_text=True)
    assert key_row(app, key_id) == before


def settle_at(app, account_id: int, key_id: int, cost: int, when: datetime) -> None:
    """A request of the key billed `cost` at `when`."""
    with app.app_context():
        hold = ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=cost,
            expires_at=when + timedelta(hours=1),
            api_key_id=key_id,
        )
        assert holds.settle(hold.id, cost, now=when, connection=db.session.connection())
        db.session.commit()


def test_issue10_9_spend_per_key_is_shown_lifetime_and_this_period(app, browser, owner):
    account_id, key_id = owner
    now = utcnow()
    settle_at(app, account_id, key_id, 2 * CREDIT, now - timedelta(days=40))
    settle_at(app, account_id, key_id, CREDIT // 4, now)
    # A limit that starts resetting counts what was settled in the current period only.
    assert edit(browser, key_id, limit="5", limit_reset="monthly").status_code == 200
    key = key_row(app, key_id)
    assert key["period_started_at"] == period_start("monthly", now)
    assert key["usage_nanocredits"] - key["period_usage_base_nanocredits"] == CREDIT // 4
    html = browser.get("/keys").get_data(as_text=True)
    row = html[html.index(f'<tr id="key-{key_id}">') :]
    assert "2.25" in row  # lifetime
    assert "0.25 this month" in row
    assert "5.00 a month" in row and "4.75 left" in row
    # Without a reset the lifetime spend counts against the limit.
    edit(browser, key_id, limit="5")
    row = browser.get("/keys").get_data(as_text=True)
    assert "2.75 left" in row
