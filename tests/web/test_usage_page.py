"""The portal's usage page: recent requests, totals, a filter by key; only the account's own."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey, UsageRecord
from app.services.keys import create_key


def add_record(account_id: int, key_id: int, model: str, cost: int, output: int = 7) -> None:
    db.session.add(
        UsageRecord(
            account_id=account_id,
            api_key_id=key_id,
            request_id="r",
            provider="openai",
            model_id=model,
            route="chat.completions",
            status="ok",
            input_tokens=11,
            cache_read_tokens=3,
            output_tokens=output,
            reasoning_tokens=2,
            cost_nanocredits=cost,
            prices_applied={},
        )
    )


def test_usage_lists_requests_with_totals_and_filters_by_key(app, browser, make_account):
    account_id = make_account("user@example.com")
    other_id = make_account("other@example.com")
    with app.app_context():
        account = db.session.get(Account, account_id)
        first, _ = create_key(account, name="laptop")
        second, _ = create_key(account, name="server")
        foreign, _ = create_key(db.session.get(Account, other_id), name="foreign")
        add_record(account_id, first.id, "gpt-4o-mini", 1_500_000)
        add_record(account_id, second.id, "claude-haiku-4-5", 2_250_000, output=9)
        add_record(other_id, foreign.id, "grok-4", 99_000_000)
        db.session.commit()
        first_id, second_id, foreign_id = first.id, second.id, foreign.id
    browser.login("user@example.com")
    page = browser.get("/usage").get_data(as_text=True)
    assert "gpt-4o-mini" in page and "claude-haiku-4-5" in page and "grok-4" not in page
    assert "0.00375" in page  # 1.5 + 2.25 thousandths of a credit
    fragment = browser.get(f"/usage?key={second_id}", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="usage-view"')
    assert "<code>claude-haiku-4-5</code>" in html and "<code>gpt-4o-mini</code>" not in html
    # Another account's key id is refused, and shows nothing of the other account.
    response = browser.get(f"/usage?key={foreign_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "That key is not one of yours." in page and "grok-4" not in page
    assert first_id


def test_usage_needs_sign_in(client):
    assert client.get("/usage").status_code == 302


def test_usage_shows_suspended_accounts_their_usage(app, browser, make_account):
    from app.services.accounts import suspend

    account_id = make_account("user@example.com")
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="k")
        add_record(account_id, key.id, "gpt-4o-mini", 10)
        suspend(db.session.get(Account, account_id), reason="t", actor_id=None)
        db.session.commit()
    browser.login("user@example.com")
    assert "gpt-4o-mini" in browser.get("/usage").get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ApiKey.id)) is not None
