"""Issue 11 item 1 in Chromium: the admin overview's chart draws on a canvas under the CSP, with
the day's figures as the server sent them, and no console or CSP error."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models.types import utcnow
from app.services.ledger import post_entry
from app.services.money import NANOS_PER_CREDIT
from tests.helpers import sign_in_page
from tests.web.usage_records import add_usage

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def test_issue11_item1_overview_chart_draws_without_console_errors(app, make_account, new_context):
    customer = make_account("user@example.com")
    make_account("admin@example.com", admin=True)
    with app.app_context():
        post_entry(
            account_id=customer,
            kind="purchase",
            amount_nanocredits=12 * NANOS_PER_CREDIT,
            idempotency_key="overview-browser-purchase",
        )
        add_usage(customer, cost=1_500_000, at=utcnow())
        db.session.commit()
    page = new_context().new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    sign_in_page(page, "admin@example.com")
    page.goto("/admin/?range=7d")
    canvas = page.locator("canvas[data-overview-chart]")
    expect(canvas).to_have_attribute("data-chart-state", "drawn")
    assert canvas.bounding_box()["height"] > 100
    datasets = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-overview-chart]'))"
        ".data.datasets.map((d) => [d.label, d.exact[d.exact.length - 1]])"
    )
    assert dict(datasets)["Paid in"] == "12"
    assert dict(datasets)["Usage at sell price"] == "0.0015"
    # Changing a date makes the range custom.
    page.fill("#overview-from", utcnow().date().isoformat())
    page.locator("#overview-from").dispatch_event("change")
    expect(page.locator("#overview-range")).to_have_value("custom")
    assert problems == []
