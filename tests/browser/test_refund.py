"""Terms §4 in Chromium: a customer asks for a refund of unused credit, an admin approves it in the
HTMX admin page, the worker makes the refund with localstripe, and the customer's page, polling,
says "refunded" and the balance is what is left."""

from __future__ import annotations

import re

import pytest

from tests.helpers import sign_in_page
from tests.stripe_emulator import run_worker

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def test_request_approve_refund_and_see_it_refunded(app, shop, make_account, new_context):
    shop.buy("5")
    shop.buy("7")
    make_account("admin@example.com", admin=True)
    customer = new_context().new_page()
    sign_in_page(customer, shop.email)
    expect(customer.locator("#balance")).to_contain_text("12.00")

    customer.goto("/credits/history")
    customer.get_by_role("link", name="Request a refund").first.click()
    expect(customer.get_by_label("Amount to refund, in US dollars")).to_have_value("7.00")
    customer.get_by_label("Amount to refund, in US dollars").fill("4.50")
    customer.get_by_label("Note for our team (optional)").fill("Bought too much.")
    customer.get_by_role("button", name="Request the refund").click()
    expect(customer).to_have_url(re.compile(r"/credits/refunds/\d+$"))
    expect(customer.locator("#request-status")).to_contain_text("requested")
    request_id = int(customer.url.rsplit("/", 1)[1])

    admin = new_context().new_page()
    sign_in_page(admin, "admin@example.com")
    admin.goto("/admin/refunds")
    admin.get_by_role("link", name=re.compile(rf"#{request_id}\b")).first.click()
    expect(admin.locator("#account-request")).to_contain_text("Bought too much.")
    expect(admin.locator("#approve-amount")).to_have_value("4.50")
    admin.locator("#approve-reason").fill("Within 30 days, unused.")
    admin.get_by_role("button", name="Approve refund").click()
    # The decision swaps the section in place (HTMX), without a reload.
    expect(admin.locator("#account-request h2")).to_contain_text("approved")

    run_worker(app, "lifecycle", "default")
    # The customer's page polls until the worker has refunded the card.
    expect(customer.locator("#request-status")).to_contain_text("refunded", timeout=15_000)
    expect(customer.locator("#refunded-amount")).to_have_text("$4.50")
    customer.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(customer.locator("#balance")).to_contain_text("7.50")
    refunds = shop.emulator.api("GET", "refunds")["data"]
    assert [refund["amount"] for refund in refunds] == [450]
