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
from app.models import Account, CatalogModel, ModelPrice
from app.models.types import utcnow
from app.services import usage_rollups
from app.services.ledger import post_entry
from app.services.money import NANOS_PER_CREDIT, display_credits, nanos_to_credits
from tests.helpers import Browser
from tests.web.usage_records import add_usage

C = NANOS_PER_CREDIT
TWO_FACTOR_SETUP = "/auth/2fa/setup"
# model-a's base-tier list prices per million tokens; its long-prompt tier must not be used.
LIST_A = {"input": 2 * C, "cache_read": C // 5, "cache_write_5m": 3 * C, "output": 8 * C}


def _catalogue() -> None:
    model = CatalogModel(
        provider="openai", model_id="model-a", name="A", context_length=1000, max_output_tokens=100
    )
    db.session.add(model)
    db.session.flush()
    for token_class, price in LIST_A.items():
        db.session.add(
            ModelPrice(
                model_pk=model.id,
                tier_threshold_tokens=0,
                token_class=token_class,
                list_price_nanos_per_mtok=price,
                sell_price_nanos_per_mtok=price * 2,
            )
        )
        db.session.add(
            ModelPrice(
                model_pk=model.id,
                tier_threshold_tokens=200_000,
                token_class=token_class,
                list_price_nanos_per_mtok=price * 10,
                sell_price_nanos_per_mtok=price * 20,
            )
        )


def _entry(account_id: int, kind: str, amount: int, at: datetime, key: str) -> None:
    entry, _ = post_entry(
        account_id=account_id, kind=kind, amount_nanocredits=amount, idempotency_key=key
    )
    entry.created_at = at
    db.session.flush()


def _list_cost(**tokens) -> int:
    """The tokens at model-a's base list prices, rounded half-up once (as the page must)."""
    numerator = (
        tokens.get("input_tokens", 0) * LIST_A["input"]
        + tokens.get("cache_read_tokens", 0) * LIST_A["cache_read"]
        + tokens.get("cache_write_5m_tokens", 0) * LIST_A["cache_write_5m"]
        + tokens.get("output_tokens", 0) * LIST_A["output"]
    )
    return (numerator + 500_000) // 10**6


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
        _catalogue()
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
        # Usage: folded first, then more above the watermark.
        old_a = dict(input_tokens=300_001, cache_read_tokens=7, output_tokens=1_234)
        add_usage(alice, model="model-a", cost=111_111, at=earlier, **old_a)
        add_usage(bob, model="model-b", cost=5_000, at=earlier, input_tokens=99)
        today_a = dict(input_tokens=1_000, cache_write_5m_tokens=33, output_tokens=3)
        add_usage(bob, model="model-a", cost=222_222, at=this_morning, **today_a)
        db.session.commit()
        while usage_rollups.fold_next_chunk(now + timedelta(hours=1), delay=timedelta(0)):
            db.session.commit()
        folded = usage_rollups.watermark()
        above_a = dict(input_tokens=5, output_tokens=500_000)
        above_id = add_usage(alice, model="model-a", cost=333_333, at=this_morning, **above_a)
        add_usage(alice, model="model-a", cost=444, at=earlier, input_tokens=1, output_tokens=0)
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
            "list_cost": _list_cost(**today_a) + _list_cost(**above_a),
        },
        "earlier_figures": {
            "paid_in": 50 * C,
            "granted": 0,
            "refunded": 0,
            "disputed": 20 * C,
            "revenue": 111_111 + 5_000 + 444,
            "list_cost": _list_cost(**old_a) + _list_cost(input_tokens=1),
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
    assert "current base-tier list prices" in page and "UTC" in page
    assert "model-b" in page  # not in the catalogue: named as without a provider cost


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
