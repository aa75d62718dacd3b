"""Issue 10 item 12 in Chromium, at a phone's width (390 px) and a desktop's (1280 px): no table
hides its important columns (pricing shows the prices, keys their spend, status and actions, usage the cost
and status, activity the amounts, the admin's accounts their status and balance) without sideways
scrolling, no page scrolls sideways, and every link of the navigation, Admin included, is in view
and goes to its page. A screenshot of each page at each width is saved in the test's tmp dir."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.keys import create_key
from app.services.ledger import grant_credits
from tests.helpers import sign_in_page
from tests.web.usage_records import add_usage

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

CREDIT = 1_000_000_000

# Each page, and the cells on it that must be on screen at any width.
IMPORTANT = {
    "/pricing": [
        "#pricing-results tbody th.model a",
        "#pricing-results tbody td.price-input",
        "#pricing-results tbody td.price-output",
    ],
    "/keys": [
        "#keys-table td.key-name",
        "#keys-table td.key-spend",
        "#keys-table mark.status",
        "#keys-table .key-actions :text('Edit')",
        "#keys-table button:text('Pause')",
        "#keys-table button:text('Revoke')",
    ],
    "/usage": ["#usage-table td.when a", "#usage-table td.cost", "#usage-table mark.status"],
    "/activity": [
        "#activity-table td.when",
        "#activity-table td.activity-what",
        "#activity-table td.activity-amount",
        "#activity-table td.activity-balance",
    ],
    "/admin/accounts": [
        "#accounts-table td.email a",
        "#accounts-table mark.status",
        "#accounts-table tbody td:nth-child(3)",
    ],
}
# The main navigation's links, signed in as an admin, and where each goes.
NAV_LINKS = {
    "Pricing": "/pricing",
    "Docs": "/docs",
    "Dashboard": "/dashboard",
    "API keys": "/keys",
    "Usage": "/usage",
    "Activity": "/activity",
    "Credits": "/credits",
    "Admin": "/admin/accounts",
}
ACCOUNT_LINKS = {"Change password": "/account/password", "Close account": "/account/close"}


def assert_on_screen(page, selector: str, width: int) -> None:
    """Each of the first rows' cells is displayed and lies wholly inside the viewport's width."""
    cells = page.locator(selector)
    assert cells.count() > 0, f"no {selector} on {page.url}"
    for n in range(min(cells.count(), 3)):
        cell = cells.nth(n)
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (
            f"{selector} #{n} at x={box['x']:.0f}..{box['x'] + box['width']:.0f} on {page.url}, "
            f"outside the {width} px viewport"
        )


def assert_no_sideways_scroll(page, width: int) -> None:
    page.wait_for_load_state("load")  # measured before the stylesheets apply, any page is wide
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide at {width} px"


@pytest.mark.parametrize("width, height", [(390, 844), (1280, 800)], ids=["phone", "desktop"])
def test_issue10_item12_tables_keep_important_columns_and_nav_reaches_every_page(
    app, catalog, make_account, new_context, tmp_path, width, height
):
    email = f"mobile-{width}@example.com"
    account_id = make_account(email, admin=True)
    now = utcnow()
    with app.app_context():
        account = db.session.get(Account, account_id)
        key = create_key(account, name="a rather long key name for a phone")[0].id
        for n, (model, status) in enumerate(
            [
                ("gpt-4o-mini", "ok"),
                ("claude-sonnet-4-5-20250929", "ok"),
                ("grok-4", "upstream_error"),
            ]
        ):
            add_usage(
                account_id,
                key,
                model=model,
                status=status,
                cost=123_456_789 * (n + 1),
                request_id=f"req-mobile-{width}-{n}",
                at=now - timedelta(hours=3 - n),
            )
        grant_credits(
            account_id,
            25 * CREDIT,
            note="mobile layout test",
            public_note="Welcome bonus",
            idempotency_key=f"grant-mobile-{width}",
        )
        db.session.commit()

    page = new_context(viewport={"width": width, "height": height}).new_page()
    sign_in_page(page, email)

    for path, selectors in IMPORTANT.items():
        page.goto(path)
        name = path.strip("/").replace("/", "-")
        page.screenshot(path=tmp_path / f"{name}-{width}.png", full_page=True)
        # And the table itself, from its top, at the viewport's size.
        page.locator(".table-scroll").first.scroll_into_view_if_needed()
        page.screenshot(path=tmp_path / f"{name}-{width}-table.png")
        for selector in selectors:
            assert_on_screen(page, selector, width)
        assert_no_sideways_scroll(page, width)
        # Nor does the table itself need scrolling sideways: all its shown columns fit.
        for scroll_width, client_width in page.evaluate(
            "[...document.querySelectorAll('.table-scroll')].map(e => [e.scrollWidth, e.clientWidth])"
        ):
            assert scroll_width <= client_width + 1, f"a table on {path} scrolls at {width} px"
        # The priority pattern: minor columns are left out on a phone, shown on a desktop.
        minor = page.locator(".table-scroll .col-minor")
        if minor.count():
            if width <= 600:
                expect(minor.first).to_be_hidden()
            else:
                expect(minor.first).to_be_visible()

    # Every link of the navigation is on screen on every page and goes to its page.
    for label, path in NAV_LINKS.items():
        link = page.get_by_role("navigation", name="Main").get_by_role(
            "link", name=label, exact=True
        )
        assert_on_screen(page, f"nav.site-nav a:text-is('{label}')", width)
        link.click()
        expect(page).to_have_url(re.compile(rf"{re.escape(path)}$"))
        assert_no_sideways_scroll(page, width)
    page.screenshot(path=tmp_path / f"nav-{width}.png")
    for label, path in ACCOUNT_LINKS.items():
        page.locator("nav.site-nav details.account-menu > summary").click()
        assert_on_screen(page, f"details.account-menu a:text-is('{label}')", width)
        if label == "Change password":
            page.screenshot(path=tmp_path / f"account-menu-{width}.png")
        page.locator("details.account-menu").get_by_role("link", name=label, exact=True).click()
        expect(page).to_have_url(re.compile(rf"{re.escape(path)}$"))
    page.locator("nav.site-nav details.account-menu > summary").click()
    assert_on_screen(page, "details.account-menu button:text-is('Sign out')", width)
    print(f"screenshots in {tmp_path}")
