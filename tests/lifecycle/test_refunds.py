"""Terms §4: unused credits refunded within 30 days of purchase, through an admin's decision and the
`lifecycle` worker, with real PaymentIntents and Refunds in localstripe, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import Retry
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Account, AccountRequest, Hold, LedgerEntry, Purchase
from app.models.types import utcnow
from app.services import ledger, refunds
from app.services.refunds import RefundError
from app.tasks import lifecycle as lifecycle_tasks
from tests.stripe_emulator import event_of, post_signed, run_worker

CREDIT = 1_000_000_000
CENT = 10_000_000


def _request(desk, cents: int, purchase_id: int | None = None) -> int:
    def make():
        account = db.session.get(Account, desk.account_id)
        return refunds.request_refund(account, amount_cents=cents, purchase_id=purchase_id).id

    return desk.call(make)


def _approve(desk, request_id: int, cents: int | None = None, reason: str = "within the terms"):
    def decide():
        request = db.session.get(AccountRequest, request_id)
        refunds.approve(request, amount_cents=cents, reason=reason, actor_id=desk.admin_id)

    desk.call(decide)
    with desk.app.app_context():
        lifecycle_tasks.enqueue_request(request_id)


def _spend(desk, nanocredits: int) -> None:
    """Bill a request of this cost, as the proxy settles one."""

    def bill():
        hold = ledger.place_hold(
            account_id=desk.account_id,
            amount_nanocredits=nanocredits,
            expires_at=utcnow() + timedelta(hours=1),
        )
        ledger.settle_hold(hold.id, nanocredits)

    desk.call(bill)


def _stripe_refunds(desk, purchase_id: int) -> list[dict]:
    intent = desk.shop.purchase(purchase_id).stripe_payment_intent_id
    return desk.shop.emulator.api("GET", "refunds", payment_intent=intent)["data"]


def _refund_entries(app) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(LedgerEntry.idempotency_key, LedgerEntry.amount_nanocredits)
            .where(LedgerEntry.kind == "refund")
            .order_by(LedgerEntry.id)
        ).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def test_a_refund_of_one_purchase_is_made_once_with_stripe(app, desk):
    first = desk.shop.buy("5")
    second = desk.shop.buy("7")
    request_id = _request(desk, 700, purchase_id=second)
    account = desk.account()
    # Reserved at once: what is on its way back to the card cannot be spent.
    assert account.balance_nanocredits == 12 * CREDIT and account.held_nanocredits == 7 * CREDIT
    _approve(desk, request_id)
    mail = desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 700
    made = _stripe_refunds(desk, second)
    assert len(made) == 1 and made[0]["amount"] == 700
    assert made[0]["metadata"] == {
        "account_id": str(desk.account_id),
        "refund_request": str(request_id),
        "purchase_id": str(second),
        "refund_part": str(request.parts[0].id),
    }
    assert _stripe_refunds(desk, first) == []
    assert _refund_entries(app) == [(f"refund:{made[0]['id']}", -7 * CREDIT)]
    account = desk.account()
    assert account.balance_nanocredits == 5 * CREDIT and account.held_nanocredits == 0
    assert desk.shop.purchase(second).refunded_cents == 700
    assert "Your OneKey refund is on its way" in mail and "$7.00" in mail
    desk.books_balance()


def test_a_refund_of_all_unused_credit_is_split_newest_first(app, desk):
    first = desk.shop.buy("5")
    second = desk.shop.buy("6")
    request_id = _request(desk, 1100)
    _approve(desk, request_id)
    desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 1100
    assert [(part.purchase_id, part.amount_cents) for part in request.parts] == [
        (second, 600),
        (first, 500),
    ]
    assert [r["amount"] for r in _stripe_refunds(desk, second)] == [600]
    assert [r["amount"] for r in _stripe_refunds(desk, first)] == [500]
    assert desk.account().balance_nanocredits == 0
    assert len(_refund_entries(app)) == 2
    desk.books_balance()


def test_a_partly_consumed_purchase_refunds_only_its_unused_part(app, desk):
    first = desk.shop.buy("5")
    second = desk.shop.buy("6")
    _spend(
        desk, 7 * CREDIT + 5
    )  # oldest first: all of the first purchase and 2.000000005 of the second
    with app.app_context():
        assert refunds.refundable_cents_by_purchase(desk.account_id) == {second: 399}
    with pytest.raises(RefundError, match=r"At most \$3.99"):
        _request(desk, 400)
    with pytest.raises(RefundError, match="Nothing of this purchase"):
        _request(desk, 100, purchase_id=first)
    request_id = _request(desk, 399)
    _approve(desk, request_id)
    desk.work()
    assert desk.request(request_id).state == "done"
    assert [r["amount"] for r in _stripe_refunds(desk, second)] == [399]
    assert desk.account().balance_nanocredits == 4 * CREDIT - 5 - 399 * CENT
    desk.books_balance()


def test_purchases_older_than_30_days_are_not_refundable(app, desk):
    purchase_id = desk.shop.buy("5")
    with app.app_context():
        db.session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id)
            .values(succeeded_at=utcnow() - timedelta(days=30, minutes=1))
        )
        db.session.commit()
    with pytest.raises(RefundError, match="Nothing is refundable now"):
        _request(desk, 500)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccountRequest)) == 0
        assert db.session.scalar(select(func.count()).select_from(Hold)) == 0
    desk.books_balance()


def test_the_30_day_rule_is_checked_again_when_the_refund_is_made(app, desk):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    with app.app_context():
        db.session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id)
            .values(succeeded_at=utcnow() - timedelta(days=31))
        )
        db.session.commit()
    _approve(desk, request_id)
    mail = desk.work()
    request = desk.request(request_id)
    assert request.state == "failed" and "not refundable any more" in request.error
    assert _stripe_refunds(desk, purchase_id) == []
    account = desk.account()
    assert account.held_nanocredits == 0 and account.balance_nanocredits == 5 * CREDIT
    assert "could not be completed" in mail
    desk.books_balance()


def test_a_denied_request_releases_the_reserved_credit(app, desk):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 300)
    assert desk.account().held_nanocredits == 3 * CREDIT

    def deny():
        request = db.session.get(AccountRequest, request_id)
        refunds.deny(request, reason="abuse", actor_id=desk.admin_id, customer_message="Sorry, no.")

    desk.call(deny)
    from app.tasks.mail import enqueue_request_update

    with app.app_context():
        enqueue_request_update(request_id)
    mail = desk.work()
    assert desk.request(request_id).state == "denied"
    assert desk.account().held_nanocredits == 0
    assert _stripe_refunds(desk, purchase_id) == []
    assert "declined" in mail and "Sorry, no." in mail and "abuse" not in mail
    with pytest.raises(RefundError, match="cannot be decided"):
        _approve(desk, request_id)
    desk.books_balance()


def test_one_open_request_per_account(app, desk):
    desk.shop.buy("5")
    _request(desk, 100)
    with pytest.raises(RefundError, match="already in progress"):
        _request(desk, 100)
    assert desk.account().held_nanocredits == 1 * CREDIT
    desk.books_balance()


def test_an_approval_of_less_gives_the_rest_back_at_once(app, desk):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    _approve(desk, request_id, cents=200, reason="part of it was used for testing")
    assert desk.account().held_nanocredits == 2 * CREDIT
    desk.work()
    assert desk.request(request_id).refunded_cents == 200
    assert [r["amount"] for r in _stripe_refunds(desk, purchase_id)] == [200]
    assert desk.account().balance_nanocredits == 3 * CREDIT
    desk.books_balance()


def test_a_stripe_failure_fails_the_request_and_an_admin_retry_refunds_once(app, desk):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    _approve(desk, request_id)
    api_base = app.config["STRIPE_API_BASE"]
    app.config["STRIPE_API_BASE"] = "http://127.0.0.1:9"  # Stripe unreachable
    try:
        mail = desk.work()
    finally:
        app.config["STRIPE_API_BASE"] = api_base
    request = desk.request(request_id)
    assert request.state == "failed" and request.error.startswith("Stripe:")
    # Whether Stripe made the refund is unknown: the part stays, to be looked up, never re-made.
    assert [part.state for part in request.parts] == ["pending"]
    assert desk.account().held_nanocredits == 0  # the credit is spendable again meanwhile
    assert "could not be completed" in mail
    _approve(desk, request_id, reason="Stripe is back")
    desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 500
    assert len(request.parts) == 1 and request.parts[0].state == "done"
    assert [r["amount"] for r in _stripe_refunds(desk, purchase_id)] == [500]
    assert len(_refund_entries(app)) == 1
    assert desk.account().balance_nanocredits == 0
    desk.books_balance()


def test_a_worker_killed_after_stripe_answered_refunds_and_debits_once(app, desk, monkeypatch):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    monkeypatch.setattr(lifecycle_tasks, "LIFECYCLE_RETRY", Retry(max=3))  # retried at once
    real_record_part = refunds.record_part
    crashes = []

    def record_then_crash(part, refund):
        real_record_part(part, refund)
        if not crashes:
            crashes.append(refund["id"])
            raise SystemError("worker killed before the commit")

    monkeypatch.setattr(refunds, "record_part", record_then_crash)
    _approve(desk, request_id)
    desk.work()  # the first run dies, its retry runs in the same burst
    assert crashes, "the crash was not injected"
    request = desk.request(request_id)
    assert request.state == "done" and request.runs == 2
    made = _stripe_refunds(desk, purchase_id)
    assert [r["id"] for r in made] == crashes
    assert _refund_entries(app) == [(f"refund:{crashes[0]}", -5 * CREDIT)]
    assert desk.account().balance_nanocredits == 0
    desk.books_balance()


def _charge_refunded_event(desk, purchase_id: int) -> dict:
    intent = desk.shop.emulator.api(
        "GET", f"payment_intents/{desk.shop.purchase(purchase_id).stripe_payment_intent_id}"
    )
    charge_id = intent["latest_charge"]
    charge_id = charge_id["id"] if isinstance(charge_id, dict) else charge_id
    charge = desk.shop.emulator.api("GET", f"charges/{charge_id}")
    return event_of("charge.refunded", charge, f"evt_refunded_{charge_id}")


def test_a_refund_also_reported_by_charge_refunded_is_debited_once(app, desk, client):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    _approve(desk, request_id)
    desk.work()
    event = _charge_refunded_event(desk, purchase_id)
    assert post_signed(client, event).status_code == 200
    run_worker(app)
    assert len(_refund_entries(app)) == 1
    assert desk.account().balance_nanocredits == 0
    assert desk.shop.purchase(purchase_id).refunded_cents == 500
    desk.books_balance()


def test_charge_refunded_first_then_the_retried_job_debits_once(app, desk, client, monkeypatch):
    """The worker dies after Stripe made the refund; the webhook reports it before the retry."""
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    monkeypatch.setattr(lifecycle_tasks, "LIFECYCLE_RETRY", Retry(max=3, interval=3600))

    def crash(part, refund):
        raise SystemError("worker killed before the commit")

    monkeypatch.setattr(refunds, "record_part", crash)
    _approve(desk, request_id)
    desk.work()
    monkeypatch.undo()
    assert desk.request(request_id).state == "processing"
    assert post_signed(client, _charge_refunded_event(desk, purchase_id)).status_code == 200
    run_worker(app)
    assert len(_refund_entries(app)) == 1
    # Debited by the webhook, still reserved by the request until its job records it.
    account = desk.account()
    assert account.balance_nanocredits == 0 and account.held_nanocredits == 5 * CREDIT
    with app.app_context():
        lifecycle_tasks.enqueue_request(request_id)
    desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 500
    assert len(_stripe_refunds(desk, purchase_id)) == 1
    assert len(_refund_entries(app)) == 1
    account = desk.account()
    assert account.balance_nanocredits == 0 and account.held_nanocredits == 0
    desk.books_balance()


def test_grants_are_never_paid_out(app, desk):
    def grant():
        ledger.grant_credits(desk.account_id, 50 * CREDIT, note="welcome", idempotency_key="g1")

    purchase_id = desk.shop.buy("5")
    desk.call(grant)  # the newest credit: the unused balance is first of all the grant's
    with app.app_context():
        assert refunds.refundable_cents_by_purchase(desk.account_id) == {purchase_id: 500}
    _spend(desk, 5 * CREDIT)  # spends the purchase (oldest first): what is left is granted
    with app.app_context():
        assert refunds.refundable_cents_by_purchase(desk.account_id) == {}
    with pytest.raises(RefundError, match="Nothing is refundable now"):
        _request(desk, 100)
    assert _refund_entries(app) == []


def test_a_retry_for_less_looks_up_the_pending_part_but_never_makes_it(app, desk):
    purchase_id = desk.shop.buy("5")
    request_id = _request(desk, 500)
    _approve(desk, request_id)
    api_base = app.config["STRIPE_API_BASE"]
    app.config["STRIPE_API_BASE"] = "http://127.0.0.1:9"  # Stripe unreachable: outcome unknown
    try:
        desk.work()
    finally:
        app.config["STRIPE_API_BASE"] = api_base
    assert [part.state for part in desk.request(request_id).parts] == ["pending"]
    _approve(desk, request_id, cents=200, reason="only part of it, after all")
    desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 200
    assert [(p.attempt, p.amount_cents, p.state) for p in request.parts] == [
        (1, 500, "failed"),
        (2, 200, "done"),
    ]
    assert [r["amount"] for r in _stripe_refunds(desk, purchase_id)] == [200]
    assert desk.account().balance_nanocredits == 3 * CREDIT
    desk.books_balance()
