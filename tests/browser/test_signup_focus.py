"""Issue 10 item 15 in Chromium: a refused sign-up shows every problem at once, keeps the password
typed, and puts the focus on the first field with a problem."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

PASSWORD = "a long enough passphrase"


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_a_refused_signup_focuses_the_first_problem_and_keeps_the_password(app, page):
    page.goto("/signup")
    page.get_by_label("Email", exact=True).fill("not an address")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Create account").click()

    errors = page.locator(".field-error")
    expect(errors).to_have_count(3)  # the address, the age, the Terms
    expect(page.locator("#email-error")).to_contain_text("valid email address")
    expect(page.locator("#age_confirmed-error")).to_contain_text("at least 18")
    expect(page.locator("#terms_accepted-error")).to_contain_text("accept the Terms")
    assert focused_id(page) == "email"
    expect(page.get_by_label("Password", exact=True)).to_have_value(PASSWORD)

    page.get_by_label("Email", exact=True).fill("focus@example.com")
    page.get_by_label(re.compile(r"accept the\s+Terms of Service")).check()
    page.get_by_role("main").get_by_role("button", name="Create account").click()
    expect(page.locator(".field-error")).to_have_count(1)
    assert focused_id(page) == "age_confirmed"
    # Typed once, kept through both refusals: ticking the box is all that is left.
    expect(page.get_by_label("Password", exact=True)).to_have_value(PASSWORD)
    page.keyboard.press("Space")
    page.get_by_role("main").get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
