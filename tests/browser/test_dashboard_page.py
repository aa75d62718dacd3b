"""The dashboard in Chromium (issue 10, item 8): the 7-day spend chart draws under the pages' CSP,
and the customer sets and turns off the low-balance threshold (HTMX); and a receipt (item 7)
prints without the navigation.

(Named apart from tests/web/test_dashboard.py: test folders without __init__.py need unique names.)
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.ledger import grant_credits
from tests.helpers import sign_in_page
from tests.web.ledger_history import CREDIT, spend_at
from tests.web.purchases import credited_purchase

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

EMAIL = "chart@example.com"
# The canvas's pixels that are not transparent: a drawn chart has its bars, axes and labels.
PAINTED_PIXELS = """(canvas) => {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
  return painted;
}"""


def watch_for_errors(page) -> list[str]:
    """Console errors and CSP violations of the page, as they happen."""
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_the_7_day_chart_draws_and_the_customer_sets_a_threshold_item8(
    app, make_account, new_context
):
    account_id = make_account(EMAIL)
    today = utcnow().date()
    with app.app_context():
        grant_credits(account_id, 20 * CREDIT, note="t", idempotency_key="g")
        for days_ago, cost in ((0, 2 * CREDIT), (2, CREDIT // 2), (6, 3 * CREDIT)):
            midnight = datetime.combine(today - timedelta(days=days_ago), time.min, tzinfo=UTC)
            spend_at(account_id, cost, midnight + timedelta(minutes=1))
        db.session.commit()
    page = new_context().new_page()
    errors = watch_for_errors(page)
    sign_in_page(page, EMAIL)

    canvas = page.locator("#spend-chart")
    expect(page.locator(".spend-chart.is-drawn")).to_have_count(1)
    values = canvas.evaluate("(c) => Chart.getChart(c).data.datasets[0].data")
    assert values == [3, 0, 0, 0, 0.5, 0, 2]
    assert canvas.evaluate(PAINTED_PIXELS) > 500
    expect(page.locator("#spend-today")).to_contain_text("2.00")

    threshold = page.get_by_label("Email me when my balance falls below (credits)")
    threshold.fill("15")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#low-balance-alert .notice-success")).to_contain_text("Saved")
    expect(page.locator("#low-balance-threshold")).to_have_text("15.00 credits")
    # The balance (14.50) is below it already: the page says so.
    expect(page.locator("#low-balance-state")).to_contain_text("below it now")
    expect(page).to_have_url(f"{page.url.split('/dashboard')[0]}/dashboard")  # swapped in place
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account.low_balance_threshold_nanocredits == 15 * CREDIT

    page.get_by_role("button", name="Turn off").click()
    expect(page.locator("#low-balance-state")).to_contain_text("Off.")
    with app.app_context():
        assert db.session.get(Account, account_id).low_balance_threshold_nanocredits is None
    assert errors == []


def test_a_receipt_prints_without_the_navigation_item7(app, make_account, new_context):
    account_id = make_account(EMAIL)
    purchase_id = credited_purchase(app, account_id, 1250, intent="pi_print")
    page = new_context().new_page()
    errors = watch_for_errors(page)
    sign_in_page(page, EMAIL)
    page.goto(f"/credits/{purchase_id}/receipt")
    expect(page.locator("#receipt-reference")).to_have_text("pi_print")
    expect(page.get_by_role("button", name="Print")).to_be_visible()
    expect(page.locator(".site-header")).to_be_visible()
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator(".site-footer")).to_be_hidden()
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.locator("#receipt")).to_be_visible()
    expect(page.locator("#receipt-paid")).to_have_text("$12.50")
    assert errors == []
