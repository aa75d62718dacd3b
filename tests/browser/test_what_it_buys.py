"""Issue 10 item 14 in Chromium: with Stripe configured, "what it buys" follows the amount as it is
typed (htmx, after a short pause) and the preset amounts fill the field; without Stripe the page
says how credit is obtained and offers nothing to buy."""

from __future__ import annotations

import pytest

from tests.helpers import sign_in_page

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def customer(app, catalog, make_account, page):
    make_account("typist@example.com")
    sign_in_page(page, "typist@example.com")
    return page


def test_what_it_buys_follows_the_amount_typed_and_the_presets(app, customer, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_test_credits_page")
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_credits_page")
    page = customer
    page.goto("/credits")
    heading = page.locator("#buys-heading")
    expect(heading).to_have_text("What $20.00 buys")
    amount = page.get_by_label("Amount in US dollars")

    amount.press_sequentially("50")
    expect(heading).to_have_text("What $50.00 buys")
    expect(page.locator("#what-it-buys tbody tr")).to_have_count(3)

    presets = page.locator("#amount-presets")
    expect(presets).to_be_visible()
    ten = presets.get_by_role("button", name="$10", exact=True)
    ten.click()
    expect(amount).to_have_value("10.00")
    expect(heading).to_have_text("What $10.00 buys")
    expect(ten).to_have_attribute("aria-pressed", "true")
    expect(presets.get_by_role("button", name="$50", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )

    amount.fill("")
    amount.press_sequentially("3")
    expect(page.locator("#buys-problem")).to_have_text("The minimum purchase is $5.00.")
    expect(ten).to_have_attribute("aria-pressed", "false")


def test_without_stripe_the_page_says_how_to_get_credit(app, customer):
    page = customer
    page.goto("/credits")
    expect(page.get_by_role("heading", name="How to get credit")).to_be_visible()
    main = page.get_by_role("main")
    expect(main.get_by_role("button")).to_have_count(0)
    expect(main.get_by_role("link", name="Buy credits")).to_have_count(0)
    page.goto("/dashboard")
    expect(page.get_by_role("main").get_by_role("link", name="Buy credits")).to_have_count(0)
