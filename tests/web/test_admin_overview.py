"""Issue 11 item 1: the admin's money overview at /admin.

Every figure is checked against amounts worked out here from the seeded ledger entries and usage
records, with some records folded into the rollups and some above the watermark; the ranges pick
UTC days; accounts below zero and flagged are linked; nobody but an enrolled admin sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services import usage_rollups
from app.services.ledger import post_entry
from app.services.money import NANOS_PER_CREDIT, display_credits, nanos_to_credits
from tests.helpers import Browser
from tests.web.usage_records import add_usage

C = NANOS_PER_CREDIT
TWO_FACTOR_SETUP = "/auth/2fa/setup"


def _entry(account_id: int, kind: str, amount: int, at: datetime, key: str) -> None:
    entry, _ = post_entry(
        account_id=account_id, kind=kind, amount_nanocredits=amount, idempotency_key=key
    )
    entry.created_at = at
    db.session.flush()


@pytest.fixture
def seeded(app, make_account):
    """Two customers' money and usage today and five days ago (UTC), one record folded and one
    above the watermark each day; returns the expected figures."""
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    now = utcnow()
    today = now.date()
    midnight = datetime.combine(today, time.min, tzinfo=UTC)
    earlier = midnight - timedelta(days=5) + timedelta(hours=3)
    this_morning = midnight + timedelta(seconds=1) if now - midnight > timedelta(minutes=5) else now
    with app.app_context():
        # Money: purchases, grants, a refund, a lost dispute and one won back.
        _entry(alice, "purchase", 50 * C, earlier, "p1")
        _entry(bob, "purchase", 20 * C, this_morning, "p2")
        _entry(alice, "grant", 5 * C, this_morning, "g1")
        _entry(alice, "refund", -7 * C, this_morning, "r1")
        _entry(bob, "dispute", -20 * C, earlier, "d1")
        _entry(bob, "dispute", 4 * C, this_morning, "d2")
        _entry(bob, "usage", -3 * C, this_morning, "u1")  # not a figure of its own
        # Outside every range shown: 40 days ago.
        _entry(alice, "purchase", 1000 * C, midnight - timedelta(days=40), "p-old")
        db.session.execute(
            update(Account).where(Account.id == alice).values(held_nanocredits=2 * C)
        )
        db.session.execute(
            update(Account).where(Account.id == bob).values(flagged_reason="negative balance")
        )
        # Usage, with the list cost settlement recorded (tests/proxy/test_list_cost.py checks
        # that figure): folded first, then more above the watermark. model-b's records have
        # none (older than migration 0014, their prices gone): counted, not costed.
        add_usage(alice, model="model-a", cost=111_111, list_cost_nanocredits=55_555, at=earlier)
        add_usage(bob, model="model-b", cost=5_000, at=earlier)
        add_usage(bob, model="model-a", cost=222_222, list_cost_nanocredits=99_999, at=this_morning)
        db.session.commit()
        while usage_rollups.fold_next_chunk(now + timedelta(hours=1), delay=timedelta(0)):
            db.session.commit()
        folded = usage_rollups.watermark()
        above_id = add_usage(
            alice, model="model-a", cost=333_333, list_cost_nanocredits=7, at=this_morning
        )
        add_usage(alice, model="model-a", cost=444, list_cost_nanocredits=400, at=earlier)
        add_usage(alice, model="model-b", cost=1, at=earlier)
        db.session.commit()
        assert above_id > folded > 0
    return {
        "today": today,
        "alice": alice,
        "bob": bob,
        "liability": (50 + 5 - 7 + 1000) * C + (20 - 20 + 4 - 3) * C,
        "held": 2 * C,
        "today_figures": {
            "paid_in": 20 * C,
            "granted": 5 * C,
            "refunded": 7 * C,
            "disputed": -4 * C,
            "revenue": 222_222 + 333_333,
            "list_cost": 99_999 + 7,
        },
        "earlier_figures": {
            "paid_in": 50 * C,
            "granted": 0,
            "refunded": 0,
            "disputed": 20 * C,
            "revenue": 111_111 + 5_000 + 444 + 1,
            "list_cost": 55_555 + 400,
        },
    }


def _figure(page: str, name: str) -> str:
    marker = f'id="overview-{name}">'
    start = page.index(marker) + len(marker)
    return page[start : page.index(" <small>", start)]


def test_issue11_item1_overview_figures_are_exact_over_30_days(admin, seeded):
    page = admin.get("/admin/").get_data(as_text=True)
    assert _figure(page, "liability") == display_credits(seeded["liability"])
    assert _figure(page, "held") == display_credits(seeded["held"])
    today, earlier = seeded["today_figures"], seeded["earlier_figures"]
    for name in today:
        assert _figure(page, name.replace("_", "-")) == display_credits(
            today[name] + earlier[name]
        ), name
    margin = sum(f["revenue"] - f["list_cost"] for f in (today, earlier))
    assert _figure(page, "margin") == display_credits(margin)
    assert "UTC" in page
    unpriced = page[page.index('id="overview-unpriced"') :]
    assert "model-b (2 requests)" in unpriced[: unpriced.index("</span>")]
    assert "model-a (" not in unpriced


def test_issue11_item1_today_range_and_chart_json_per_day(admin, seeded):
    page = admin.get("/admin/?range=today").get_data(as_text=True)
    today = seeded["today_figures"]
    for name, value in today.items():
        assert _figure(page, name.replace("_", "-")) == display_credits(value), name
    data = admin.get("/admin/overview/chart.json?range=7d").get_json()
    days = [seeded["today"] - timedelta(days=n) for n in range(6, -1, -1)]
    assert data["days"] == [day.isoformat() for day in days]
    series = {s["key"]: s["values"] for s in data["series"]}
    for name, value in today.items():
        assert series[name][6] == nanos_to_credits(value), name
        assert series[name][1] == nanos_to_credits(seeded["earlier_figures"][name]), name
        assert all(v == "0" for v in series[name][2:6]), name


def test_issue11_item1_custom_range_and_bad_ranges(admin, seeded):
    day = (seeded["today"] - timedelta(days=5)).isoformat()
    page = admin.get(f"/admin/?range=custom&from={day}&to={day}").get_data(as_text=True)
    for name, value in seeded["earlier_figures"].items():
        assert _figure(page, name.replace("_", "-")) == display_credits(value), name
    for query in (
        "range=year",
        "range=custom&from=2026-12-05&to=2026-12-01",
        "range=custom&from=nonsense&to=2026-12-01",
        "range=custom&from=2020-01-01&to=2026-01-01",
    ):
        response = admin.get(f"/admin/?{query}")
        assert response.status_code == 400, query
        assert 'id="overview-errors"' in response.get_data(as_text=True)
        assert admin.get(f"/admin/overview/chart.json?{query}").status_code == 400


def test_issue11_item1_below_zero_and_flagged_accounts_are_linked(app, admin, seeded):
    with app.app_context():
        carol = db.session.get(Account, seeded["alice"])
        db.session.execute(
            update(Account).where(Account.id == carol.id).values(balance_nanocredits=-5)
        )
        db.session.commit()
    page = admin.get("/admin/").get_data(as_text=True)
    below = page[page.index('id="overview-below-zero"') : page.index('id="flagged-heading"')]
    assert f'href="/admin/accounts/{seeded["alice"]}"' in below
    assert f'/admin/accounts/{seeded["bob"]}"' not in below
    flagged = page[page.index('id="overview-flagged"') :]
    assert f'href="/admin/accounts/{seeded["bob"]}"' in flagged and "negative balance" in flagged


def test_issue11_item1_overview_is_admins_only_and_keeps_the_nav(app, admin, make_account):
    make_account("user@example.com")
    make_account("new-admin@example.com", admin=True, two_factor=False)
    customer = Browser(app.test_client())
    customer.login("user@example.com")
    anonymous = Browser(app.test_client())
    for path in ("/admin/", "/admin/overview/chart.json"):
        assert anonymous.get(path).status_code == 404
        assert customer.get(path).status_code == 404
    unenrolled = Browser(app.test_client())
    unenrolled.login("new-admin@example.com", second_factor=False)
    for path in ("/admin/", "/admin/overview/chart.json"):
        response = unenrolled.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(TWO_FACTOR_SETUP)
    page = admin.get("/admin/").get_data(as_text=True)
    for section in ("/admin/accounts", "/admin/flagged", "/admin/catalog", "/admin/jobs"):
        assert f'href="{section}"' in page
    assert 'aria-current="page">Overview' in page
    assert "<script>" not in page and 'style="' not in page
