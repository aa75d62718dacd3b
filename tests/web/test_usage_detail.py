"""Issue 10 item 6: each usage row opens its detail: request id, the prices applied, every token
class, and what its status means for this request (with an estimate's basis when recorded)."""

from __future__ import annotations

import html
import re

from app.extensions import db
from app.models import Account
from app.services.keys import create_key
from tests.web.usage_records import add_usage

PRICES = {
    "tier": 0,
    "input": 3_300_000_000,  # 3.3 credits per million tokens
    "cache_read": 330_000_000,
    "cache_write_5m": 4_125_000_000,
    "cache_write_1h": 6_600_000_000,
    "output": 16_500_000_000,
}


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_item6_a_row_opens_its_detail_with_prices_and_every_token_class(app, browser, make_account):
    account_id = make_account("user@example.com")
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="laptop")
        # 1000×3.3 + 2000×0.33 + 300×4.125 + 400×6.6 + 500×16.5 = 16,267.5 credits per million
        # tokens, so 0.0162675 credits exactly.
        record_id = add_usage(
            account_id,
            key.id,
            request_id="req-0123456789abcdef",
            model="claude-sonnet-4-5",
            provider="anthropic",
            route="anthropic.messages",
            streamed=True,
            cost=16_267_500,
            prices_applied=PRICES,
            input_tokens=1_000,
            cache_read_tokens=2_000,
            cache_write_5m_tokens=300,
            cache_write_1h_tokens=400,
            output_tokens=500,
            reasoning_tokens=120,
            latency_ms=2_345,
            time_to_first_token_ms=456,
        )
        db.session.commit()
    browser.login("user@example.com")
    log = browser.get("/usage").get_data(as_text=True)
    assert f'hx-get="/usage/{record_id}" hx-target="#usage-detail-body"' in log

    response = browser.get(f"/usage/{record_id}")
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "Request id req-0123456789abcdef" in page
    assert "Key laptop" in page and "Provider anthropic" in page
    assert "Latency 2,345 ms" in page and "Time to first token 456 ms" in page
    assert "Input 1,000 3.30 0.0033" in page
    assert "Cached input 2,000 0.33 0.00066" in page
    assert "Cache write, 5 min 300 4.125 0.0012375" in page
    assert "Cache write, 1 h 400 6.60 0.00264" in page
    assert "Output 500 incl. 120 reasoning 16.50 0.00825" in page
    assert "0.016267500" in page  # the cost, all nine decimals
    assert "The provider reported this request's token counts in full" in page
    assert "Base prices" in page

    fragment = browser.get(f"/usage/{record_id}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith(f'<div class="usage-detail" id="usage-detail-{record_id}">')
    assert "<html" not in body


def test_item6_partial_and_estimated_say_what_they_mean_and_show_the_estimate_basis(
    app, browser, make_account
):
    account_id = make_account("user@example.com")
    basis = {
        "input": "ceil(text bytes / 4) + allowances",
        "text_bytes": 4_096,
        "images": 1,
        "delivered_bytes": 802,
    }
    with app.app_context():
        estimated = add_usage(account_id, status="estimated", estimate_basis=basis)
        partial = add_usage(account_id, status="partial")
        failed = add_usage(account_id, status="upstream_error", cost=0)
        tiered = add_usage(account_id, prices_applied={**PRICES, "tier": 200_000})
        db.session.commit()
    browser.login("user@example.com")

    page = text_of(browser.get(f"/usage/{estimated}").get_data(as_text=True))
    assert "Status: estimated" in page
    assert "The provider reported no token counts" in page
    assert "one token per 4 bytes delivered to you, rounded up" in page
    assert "How this request's estimate was made" in page
    assert "input ceil(text bytes / 4) + allowances" in page
    assert "text bytes 4096" in page and "images 1" in page and "delivered bytes 802" in page

    page = text_of(browser.get(f"/usage/{partial}").get_data(as_text=True))
    assert "Status: partial" in page and "The stream ended before it finished" in page
    assert "How this request's estimate was made" not in page

    page = text_of(browser.get(f"/usage/{failed}").get_data(as_text=True))
    assert "Only tokens the provider itself reported were billed" in page

    page = text_of(browser.get(f"/usage/{tiered}").get_data(as_text=True))
    assert "long-context tier (over 200,000 prompt tokens)" in page


def test_item6_another_accounts_record_is_not_found(app, browser, make_account):
    make_account("user@example.com")
    other_id = make_account("other@example.com")
    with app.app_context():
        theirs = add_usage(other_id, request_id="req-theirs")
        db.session.commit()
    browser.login("user@example.com")
    for headers in ({}, {"HX-Request": "true"}):
        response = browser.get(f"/usage/{theirs}", headers=headers)
        assert response.status_code == 404
        assert "req-theirs" not in response.get_data(as_text=True)
    assert browser.get("/usage/999999").status_code == 404
