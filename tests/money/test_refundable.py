"""Terms §4: refunds of unused credits within 30 days of purchase; grants are never paid out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Account, Purchase
from app.models.types import utcnow
from app.services.ledger import grant_credits, place_hold, post_entry
from app.services.payments import apply_payment_succeeded, cents_to_nanos, record_refund
from app.services.refunds import refundable_cents_by_purchase


@pytest.fixture
def account_id(app_ctx, make_account):
    return make_account("buyer@example.com")


def buy(account_id: int, cents: int, *, days_ago: float = 0) -> Purchase:
    """A purchase credited the way the worker credits one, `days_ago` days back."""
    purchase = Purchase(account_id=account_id, amount_cents=cents, status="pending")
    db.session.add(purchase)
    db.session.flush()
    apply_payment_succeeded(
        {
            "id": f"pi_{purchase.id}",
            "amount": cents,
            "currency": "usd",
            "metadata": {"account_id": str(account_id), "purchase_id": str(purchase.id)},
        }
    )
    purchase.succeeded_at = utcnow() - timedelta(days=days_ago)
    db.session.flush()
    return purchase


def spend(account_id: int, nanocredits: int, key: str) -> None:
    post_entry(
        account_id=account_id, kind="usage", amount_nanocredits=-nanocredits, idempotency_key=key
    )


def test_an_unspent_recent_purchase_is_refundable_in_full(account_id):
    purchase = buy(account_id, 2000)
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 2000}


def test_spending_consumes_the_oldest_purchase_first(account_id):
    old = buy(account_id, 1000, days_ago=5)
    new = buy(account_id, 1000, days_ago=1)
    spend(account_id, cents_to_nanos(1200), "u1")
    # 8.00 unused, all of it from the newest purchase.
    assert refundable_cents_by_purchase(account_id) == {new.id: 800}
    assert old.id not in refundable_cents_by_purchase(account_id)


def test_refunds_only_within_30_days_of_the_purchase(account_id):
    buy(account_id, 1000, days_ago=31)
    recent = buy(account_id, 500, days_ago=29)
    assert refundable_cents_by_purchase(account_id) == {recent.id: 500}


def test_granted_credits_are_never_paid_out(account_id):
    purchase = buy(account_id, 1000, days_ago=2)
    grant_credits(account_id, cents_to_nanos(500), note="welcome", idempotency_key="g1")
    # Spending took the older purchase first: 3.00 of it is left, beside the 5.00 grant.
    spend(account_id, cents_to_nanos(700), "u1")
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 300}
    spend(account_id, cents_to_nanos(800), "u2")
    assert refundable_cents_by_purchase(account_id) == {}


def test_credit_held_for_requests_in_flight_is_not_refundable(account_id):
    purchase = buy(account_id, 1000)
    place_hold(
        account_id=account_id,
        amount_nanocredits=cents_to_nanos(250),
        expires_at=utcnow() + timedelta(minutes=10),
    )
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 750}


def test_refundable_is_floored_to_the_cent(account_id):
    purchase = buy(account_id, 1000)
    spend(account_id, 1, "u1")  # one nanocredit
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 999}


def test_what_was_refunded_is_not_refundable_again(account_id):
    purchase = buy(account_id, 1000)
    record_refund(purchase, "re_1", 400)
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 600}
    record_refund(purchase, "re_1", 400)  # the same refund reported again
    assert refundable_cents_by_purchase(account_id) == {purchase.id: 600}


def test_a_negative_balance_refunds_nothing(account_id):
    buy(account_id, 1000)
    spend(account_id, cents_to_nanos(1500), "u1")
    assert db.session.get(Account, account_id).balance_nanocredits < 0
    assert refundable_cents_by_purchase(account_id) == {}


def test_a_disputed_purchase_is_not_refundable(account_id):
    purchase = buy(account_id, 1000)
    purchase.disputed_cents = 1000
    db.session.flush()
    assert refundable_cents_by_purchase(account_id) == {}


def test_history_page_shows_what_is_refundable_now(app, make_account, browser):
    account = make_account("shopper@example.com")
    with app.app_context():
        buy(account, 1000, days_ago=40)
        buy(account, 2500, days_ago=3)
        spend(account, cents_to_nanos(100), "u1")  # from the oldest purchase
        db.session.commit()
    browser.login("shopper@example.com")
    page = browser.get("/credits/history").get_data(as_text=True)
    assert page.count('class="num refundable">$25.00<') == 1
    assert page.count('class="num refundable">$0.00<') == 1
