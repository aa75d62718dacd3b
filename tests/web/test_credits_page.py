"""Issue 10 item 14, the credits page: without Stripe it says how credit is obtained and no page
offers to buy; with Stripe it offers preset amounts within the purchase limits, and "what it
buys" follows the amount typed (an htmx fragment)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel, ModelPrice, Purchase

HTMX = {"HX-Request": "true"}


@pytest.fixture
def customer(app, make_account, browser, catalog):
    account_id = make_account("buyer@example.com")
    browser.login("buyer@example.com")
    return browser, account_id


@pytest.fixture
def with_stripe(app, monkeypatch):
    # Rendering the credits page calls no Stripe API: the keys being set is what it looks at.
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_test_credits_page")
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_credits_page")


def page(browser, path: str) -> str:
    response = browser.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def main_part(html: str) -> str:
    return html.partition('<main id="main"')[2].partition("</main>")[0]


def input_million_tokens(app, model_id: str, cents: int) -> str:
    """Millions of input tokens `cents` buy, from the stored sell price."""
    with app.app_context():
        price = db.session.scalar(
            select(ModelPrice.sell_price_nanos_per_mtok)
            .join(CatalogModel, CatalogModel.id == ModelPrice.model_pk)
            .where(
                CatalogModel.model_id == model_id,
                ModelPrice.tier_threshold_tokens == 0,
                ModelPrice.token_class == "input",
            )
        )
    return f"{cents * 10_000_000 / price:,.1f} million"


def test_without_stripe_the_credits_page_says_how_credit_is_obtained(app, customer):
    browser, _ = customer
    html = page(browser, "/credits")
    assert 'id="how-to-get-credit"' in html
    assert "not set up" in html and app.config["SUPPORT_EMAIL"] in html
    assert "buyer@example.com" in main_part(html)  # the address to write from
    assert "grant" in html
    assert 'id="buy-form"' not in html and "amount-presets" not in html
    assert "<h1>Credits</h1>" in html


def test_without_stripe_no_page_offers_to_buy(app, customer):
    browser, account_id = customer
    with app.app_context():
        db.session.add(
            Purchase(account_id=account_id, amount_cents=500, status="failed", attempts=1)
        )
        db.session.commit()
    for path in ("/dashboard", "/credits", "/credits/history"):
        main = main_part(page(browser, path))
        assert "Buy credits" not in main, path
        assert not re.search(r">\s*(Pay|Retry|Try again)\s*<", main), path
    assert "How to get credit" in main_part(page(browser, "/dashboard"))


def test_with_stripe_buy_buttons_and_the_presets_within_the_limits(
    app, customer, with_stripe, monkeypatch
):
    browser, _ = customer
    assert "Buy credits" in main_part(page(browser, "/dashboard"))
    html = page(browser, "/credits")
    assert 'id="buy-form"' in html and 'id="how-to-get-credit"' not in html
    presets = re.findall(r'data-amount="([^"]+)"[^>]*>\s*([^<]+?)\s*</button>', html)
    assert presets == [
        ("5.00", "$5"),
        ("10.00", "$10"),
        ("25.00", "$25"),
        ("50.00", "$50"),
        ("100.00", "$100"),
    ]
    monkeypatch.setitem(app.config, "PURCHASE_MIN_CENTS", 1000)
    monkeypatch.setitem(app.config, "PURCHASE_MAX_CENTS", 5000)
    html = page(browser, "/credits")
    assert re.findall(r'data-amount="([^"]+)"', html) == ["10.00", "25.00", "50.00"]


def test_with_stripe_what_it_buys_follows_the_amount_typed(app, customer, with_stripe):
    browser, _ = customer
    html = page(browser, "/credits")
    amount_input = re.search(r'<input[^>]*id="amount"[^>]*>', html).group(0)
    assert 'data-hx-get="/credits/what-it-buys"' in amount_input
    assert 'data-hx-trigger="input changed delay:300ms"' in amount_input
    assert 'data-hx-target="#what-it-buys"' in amount_input
    assert "What $20.00 buys" in html and 'id="what-it-buys"' in html

    fragment = browser.get("/credits/what-it-buys?amount=50", headers=HTMX)
    assert fragment.status_code == 200
    text = fragment.get_data(as_text=True)
    assert text.lstrip().startswith('<section id="what-it-buys"')
    assert "What $50.00 buys" in text and "<html" not in text
    assert input_million_tokens(app, "gpt-4o-mini", 5000) in text

    too_little = browser.get("/credits/what-it-buys?amount=2", headers=HTMX).get_data(as_text=True)
    assert "The minimum purchase is $5.00." in too_little and "<table" not in too_little
    typo = browser.get("/credits/what-it-buys?amount=abc", headers=HTMX).get_data(as_text=True)
    assert "Enter an amount in dollars" in typo
    empty = browser.get("/credits/what-it-buys?amount=", headers=HTMX).get_data(as_text=True)
    assert "What $20.00 buys" in empty
    # Not a page of its own: a plain visit goes to the credits page.
    plain = browser.get("/credits/what-it-buys?amount=50")
    assert plain.status_code == 302 and plain.headers["Location"].endswith("/credits")
