"""Issue 11 item 8 in Chromium: an admin's first sign-in enrols a second factor (the QR code loads
under the CSP; the secret shown as text gives, through pyotp, the code that confirms it), sees the
recovery codes and reaches the admin area; once idle, an HTMX request there sends the page to the
code, and the code brings it back."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.helpers import TEST_PASSWORD, second_factor_code

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

EMAIL = "new-admin@example.com"


def test_item8_an_admin_enrols_in_chromium_and_reaches_the_admin_area(
    app, make_account, page, monkeypatch
):
    make_account(EMAIL, admin=True, two_factor=False)
    make_account("bob@example.com")
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)

    page.goto("/login")
    page.get_by_label("Email", exact=True).fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/auth/2fa/setup"))
    qr_code = page.locator("#totp-qr-code")
    expect(qr_code).to_be_visible()
    assert qr_code.evaluate("img => img.complete && img.naturalWidth > 100")

    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    codes = page.locator("#recovery-codes").inner_text().split()
    assert len(codes) == 10 and len(set(codes)) == 10
    page.get_by_role("button", name="I have saved them: continue").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))  # the money overview
    page.locator("#admin-nav").get_by_role("link", name="Accounts").click()
    expect(page).to_have_url(re.compile(r"/admin/accounts$"))
    expect(page.get_by_role("main")).to_contain_text("bob@example.com")

    # Idle past the timeout (the live server runs this app), the search's HTMX request sends the
    # whole page to the code, not a fragment into the table.
    monkeypatch.setitem(app.config, "ADMIN_IDLE_TIMEOUT_SECONDS", 1)
    time.sleep(1.2)
    page.locator("#accounts-q").fill("bob")
    expect(page).to_have_url(re.compile(r"/auth/2fa/verify\?next="))
    expect(page).to_have_title(re.compile(r"^Enter your code"))
    expect(page.locator("#accounts-q")).to_have_count(0)  # a page of its own, not a part
    expect(page.get_by_role("main")).to_contain_text("Your admin session was idle")
    monkeypatch.setitem(app.config, "ADMIN_IDLE_TIMEOUT_SECONDS", 900)
    page.get_by_label("Authentication code").fill(second_factor_code(app, EMAIL))
    page.get_by_role("main").get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/admin/accounts$"))
    assert refused == []
