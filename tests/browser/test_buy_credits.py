"""A customer buys $5 of credits in Chromium, through localstripe's Stripe.js, and watches the
balance become 5 once the worker has credited the payment."""

from __future__ import annotations

import pytest

from tests.helpers import sign_in_page
from tests.stripe_emulator import CARD_3DS, CARD_OK, run_worker, wait_for_events

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def _enter_card(page, number: str) -> None:
    card = page.locator("#card-element")
    card.get_by_placeholder("number").fill(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("34")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("10001")


def _buy(page, amount: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Credits").click()
    expect(page.get_by_role("heading", name="Buy credits", level=1)).to_be_visible()
    page.get_by_label("Amount in US dollars").fill(amount)
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name=f"Buy ${amount}.00 of credits")).to_be_visible()


@pytest.fixture
def customer(app, stripe, live_server, make_account, page):
    stripe.register_webhook(f"{live_server}/webhooks/stripe")
    make_account("buyer@example.com")
    sign_in_page(page, "buyer@example.com")
    return page


def test_buy_five_dollars_and_watch_the_balance_become_five(app, customer):
    page = customer
    _buy(page, "5")
    _enter_card(page, CARD_OK)
    page.get_by_role("button", name="Pay $5.00").click()
    expect(page.locator("#purchase-status")).to_contain_text("Stripe has the payment")
    wait_for_events(app, 1)
    run_worker(app)
    # The status fragment polls through htmx until the credit is there.
    expect(page.locator("#new-balance")).to_have_text("5.00", timeout=15_000)
    page.get_by_role("button", name="Go to the dashboard").click()
    expect(page.locator("#balance")).to_contain_text("5.00")


def test_a_three_d_secure_card_in_the_browser(app, customer):
    page = customer
    _buy(page, "5")
    _enter_card(page, CARD_3DS)
    page.get_by_role("button", name="Pay $5.00").click()
    # localstripe's Stripe.js asks twice: when the card is saved, and when it is charged.
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.locator("#purchase-status")).to_contain_text("Stripe has the payment")
    wait_for_events(app, 1)
    run_worker(app)
    expect(page.locator("#new-balance")).to_have_text("5.00", timeout=15_000)
