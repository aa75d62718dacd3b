"""The dashboard's figures (issue 10, item 8): balance, held, spend today and this month (UTC days),
the 7-day chart's data, and the form that sets the low-balance email's threshold."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.activity import spend
from app.services.ledger import grant_credits, place_hold
from app.services.money import display_credits, nanos_to_credits
from tests.helpers import csrf_token_from
from tests.web.ledger_history import CREDIT, spend_at

ALICE = "alice@example.com"
BOB = "bob@example.com"


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def figure(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match, f"no #{element_id}"
    return match.group(1).strip()


def chart_data(html: str) -> dict:
    match = re.search(r"<canvas id=\"spend-chart\"[^>]*data-chart='([^']*)'", html)
    assert match, "no chart data on the dashboard"
    return json.loads(html_lib.unescape(match.group(1)))


def test_dashboard_shows_balance_held_and_spend_today_and_this_month_in_utc_item8(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    bob_id = make_account(BOB)
    today = utcnow().date()
    spent = {  # when: cost
        midnight(today): 1_000_000_007,  # the first instant of today (UTC)
        midnight(today) + timedelta(hours=1): 3,
        midnight(today) - timedelta(seconds=1): 20_000_000,  # the last second of yesterday
        midnight(today - timedelta(days=3)) + timedelta(hours=5): 300_000_000,
        midnight(today - timedelta(days=6)): 5,  # the oldest day of the chart
        midnight(today - timedelta(days=7)) + timedelta(hours=23): 70_000,  # a day before it
        midnight(today - timedelta(days=40)): 9 * CREDIT,  # always an earlier month
    }
    with app.app_context():
        grant_credits(alice_id, 50 * CREDIT, note="t", idempotency_key="ga")
        grant_credits(bob_id, 50 * CREDIT, note="t", idempotency_key="gb")
        for when, cost in spent.items():
            spend_at(alice_id, cost, when)
        spend_at(bob_id, 7 * CREDIT, midnight(today) + timedelta(minutes=5))
        place_hold(
            account_id=alice_id,
            amount_nanocredits=300_000_000,
            expires_at=utcnow() + timedelta(hours=1),
        )
        db.session.commit()
        balance = db.session.get(Account, alice_id).balance_nanocredits
    browser.login(ALICE)
    html = browser.get("/dashboard").get_data(as_text=True)

    assert balance == 50 * CREDIT - sum(spent.values())
    assert figure(html, "balance") == display_credits(balance) == "39.679929985"
    assert figure(html, "held") == "0.30"
    assert figure(html, "spend-today") == "1.00000001"
    month_start = today.replace(day=1)
    in_month = sum(cost for when, cost in spent.items() if when.date() >= month_start)
    assert figure(html, "spend-month") == display_credits(in_month)

    per_day = {}
    for when, cost in spent.items():
        per_day[when.date()] = per_day.get(when.date(), 0) + cost
    days = [today - timedelta(days=n) for n in range(6, -1, -1)]
    data = chart_data(html)
    assert data["credits"] == [nanos_to_credits(per_day.get(day, 0)) for day in days]
    assert data["labels"] == [f"{day:%a} {day.day}" for day in days]
    figures = re.search(r'<table id="spend-days">.*?</table>', html, re.S).group(0)
    assert [d for d in re.findall(r'class="when">([0-9-]+)<', figures)] == [
        d.isoformat() for d in days
    ]
    assert "(UTC)" in html
    assert "/static/vendor/chart-4.6.1.umd.min.js" in html and "/static/js/dashboard.js" in html
    assert "<script>" not in html and " style=" not in html


@pytest.mark.parametrize(
    ("today", "month_days"),
    [(date(2026, 3, 20), 3), (date(2026, 3, 2), 2)],  # the month starts before / inside the 7 days
)
def test_spend_this_month_counts_from_the_first_of_the_utc_month_item8(
    app, make_account, today, month_days
):
    alice_id = make_account(ALICE)
    with app.app_context():
        grant_credits(alice_id, 50 * CREDIT, note="t", idempotency_key="g")
        spend_at(alice_id, 100, midnight(date(2026, 2, 28)) + timedelta(hours=23, minutes=59))
        spend_at(alice_id, 10, midnight(date(2026, 3, 1)))
        spend_at(alice_id, 1, midnight(today) + timedelta(hours=8))
        if month_days == 3:
            spend_at(alice_id, 1000, midnight(date(2026, 3, 10)))
        db.session.commit()
        figures = spend(alice_id, now=midnight(today) + timedelta(hours=9))
    assert figures.today_nanocredits == 1
    assert figures.month_nanocredits == (1011 if month_days == 3 else 11)
    assert [day for day, _ in figures.days][-1] == today
    assert len(figures.days) == 7


def post_alert(browser, data: dict, *, htmx: bool = True):
    token = csrf_token_from(browser.get("/dashboard").get_data(as_text=True))
    headers = {"HX-Request": "true"} if htmx else {}
    return browser.client.post(
        "/dashboard/low-balance-alert", data={"csrf_token": token, **data}, headers=headers
    )


def threshold_of(app, account_id: int):
    with app.app_context():
        account = db.session.get(Account, account_id)
        return account.low_balance_threshold_nanocredits, account.low_balance_alert_sent_at


def test_the_customer_sets_changes_and_turns_off_the_low_balance_threshold_item8(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    browser.login(ALICE)
    assert "Off. Set a threshold" in browser.get("/dashboard").get_data(as_text=True)

    response = post_alert(browser, {"threshold": " 12.50 ", "action": "save"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="low-balance-alert"')
    assert "12.50 credits" in fragment and 'value="12.5"' in fragment
    assert threshold_of(app, alice_id) == (12_500_000_000, None)
    # The balance (0) is already below it: the page says the email is on its way.
    assert "below it now" in fragment

    with app.app_context():
        db.session.get(Account, alice_id).low_balance_alert_sent_at = utcnow()
        db.session.commit()
    post_alert(browser, {"threshold": "12.5", "action": "save"})  # unchanged: stays sent
    assert threshold_of(app, alice_id)[1] is not None
    post_alert(browser, {"threshold": "3", "action": "save"})  # changed: re-armed
    assert threshold_of(app, alice_id) == (3 * CREDIT, None)

    response = post_alert(browser, {"threshold": "3", "action": "off"})
    assert response.status_code == 200
    assert "The low-balance email is off." in response.get_data(as_text=True)
    assert threshold_of(app, alice_id) == (None, None)

    # Without JavaScript: post, then back to the dashboard with the outcome.
    response = post_alert(browser, {"threshold": "7"}, htmx=False)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/dashboard#low-balance-alert")
    page = browser.get("/dashboard").get_data(as_text=True)
    assert "Saved: we will email you" in page and "7.00 credits" in page


BAD_THRESHOLDS = [
    ("", "Enter the threshold in credits"),
    ("five", "Enter the threshold in credits"),
    ("1e3", "Enter the threshold in credits"),
    ("0", "above zero"),
    ("-5", "above zero"),
    ("0.0000000001", "Enter the threshold in credits"),
    ("1000000.01", "at most 1,000,000.00 credits"),
]


def test_a_bad_threshold_is_refused_with_a_clear_error_and_changes_nothing_item8(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    browser.login(ALICE)
    post_alert(browser, {"threshold": "4"})
    for typed, error in BAD_THRESHOLDS:
        response = post_alert(browser, {"threshold": typed, "action": "save"})
        assert response.status_code == 400, typed
        fragment = response.get_data(as_text=True)
        assert error in fragment and 'aria-invalid="true"' in fragment, typed
        assert threshold_of(app, alice_id) == (4 * CREDIT, None)
        response = post_alert(browser, {"threshold": typed}, htmx=False)
        assert response.status_code == 303
        assert error in browser.get("/dashboard").get_data(as_text=True), typed
        assert threshold_of(app, alice_id) == (4 * CREDIT, None)
