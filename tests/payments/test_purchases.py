"""Buying credits against localstripe: every paid dollar becomes exactly one credit."""

from __future__ import annotations

import json

import pytest
from rq import Retry
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, LedgerEntry, Purchase, ReconciliationRun, StripeEvent
from app.services.ledger import check_invariants
from tests.stripe_emulator import (
    CARD_3DS,
    CARD_DECLINED,
    CARD_OK,
    UNDELIVERABLE,
    event_of,
    post_signed,
    run_worker,
    wait_for_events,
)

FIVE_CREDITS = 5_000_000_000


def ledger_rows(app, kind: str | None = None) -> int:
    with app.app_context():
        query = select(func.count()).select_from(LedgerEntry)
        if kind:
            query = query.where(LedgerEntry.kind == kind)
        return db.session.scalar(query)


def assert_books_balance(app) -> None:
    with app.app_context():
        assert check_invariants() == []


def test_buying_five_dollars_credits_five_once(app, shop):
    purchase_id, secret = shop.start("5")
    response = shop.pay(purchase_id, secret, CARD_OK)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="purchase-status"' in page and "hx-trigger" in page  # polls until credited
    wait_for_events(app, 1)
    assert shop.balance() == 0  # only the worker credits
    run_worker(app)
    assert shop.balance() == FIVE_CREDITS
    row = shop.purchase(purchase_id)
    assert row.status == "succeeded" and row.attempts == 1
    fragment = shop.browser.get(f"/credits/{purchase_id}/status", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert 'id="new-balance">5.00<' in text and "hx-trigger" not in text
    intent = shop.emulator.api("GET", f"payment_intents/{row.stripe_payment_intent_id}")
    assert intent["metadata"] == {"account_id": str(row.account_id), "purchase_id": str(row.id)}
    assert intent["amount"] == 500 and intent["currency"] == "usd"
    assert ledger_rows(app, "purchase") == 1
    assert_books_balance(app)


def test_the_customer_is_created_once_per_account(app, shop):
    first, secret = shop.start("5")
    shop.pay(first, secret, CARD_OK)
    second, secret = shop.start("7.25")
    shop.pay(second, secret, CARD_OK)
    with app.app_context():
        customer = db.session.scalar(select(Account.stripe_customer_id))
    assert customer
    assert len(shop.emulator.api("GET", "customers")["data"]) == 1
    wait_for_events(app, 2)
    run_worker(app)
    assert shop.balance() == 12_250_000_000


def test_every_real_event_delivered_five_times_out_of_order_credits_once(app, shop, client):
    first, secret = shop.start("5")
    shop.pay(first, secret, CARD_OK)
    second, secret = shop.start("6")
    shop.pay(second, secret, CARD_OK)
    wait_for_events(app, 2)
    events = shop.emulator.events("payment_intent.succeeded")
    assert len(events) == 2
    for _ in range(5):
        for event in reversed(events):
            assert post_signed(client, event).status_code == 200
    run_worker(app)
    run_worker(app)
    assert shop.balance() == 11_000_000_000
    assert ledger_rows(app) == 2
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 2
    assert_books_balance(app)


def test_a_missed_webhook_is_found_by_reconciliation(app, shop, stripe):
    from app.tasks.stripe_events import reconcile_payments_job

    stripe.register_webhook(UNDELIVERABLE)  # every delivery is lost
    purchase_id, secret = shop.start("5")
    shop.pay(purchase_id, secret, CARD_OK)
    assert shop.balance() == 0
    with app.app_context():
        summary = reconcile_payments_job()
        again = reconcile_payments_job()
        db.session.remove()
    assert summary["credited"] == 1 and summary["examined"] == 1 and summary["error"] is None
    assert again["credited"] == 0
    assert shop.balance() == FIVE_CREDITS
    assert shop.purchase(purchase_id).status == "succeeded"
    with app.app_context():
        runs = db.session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.id)).all()
        assert [run.credited for run in runs] == [1, 0] and all(run.finished_at for run in runs)
        intent_id = db.session.get(Purchase, purchase_id).stripe_payment_intent_id
        assert runs[0].findings == [
            {"payment_intent": intent_id, "purchase": str(purchase_id), "outcome": "credited"}
        ]
        assert runs[1].findings == []
    assert_books_balance(app)


def test_reconciliation_pages_through_the_intent_list(app, shop, stripe, monkeypatch):
    from app.services import payments
    from app.tasks.stripe_events import reconcile_payments_job

    monkeypatch.setattr(payments, "RECONCILE_PAGE_SIZE", 2)
    stripe.register_webhook(UNDELIVERABLE)
    for amount in ("5", "6", "7"):
        purchase_id, secret = shop.start(amount)
        shop.pay(purchase_id, secret, CARD_OK)
    with app.app_context():
        summary = reconcile_payments_job()
        db.session.remove()
    assert summary["examined"] == 3 and summary["credited"] == 3
    assert shop.balance() == 18_000_000_000


def test_a_worker_crash_mid_job_is_retried_and_credits_once(app, shop, monkeypatch):
    """The job dies after writing the credit, before its commit; RQ retries it."""
    from app.services import payments
    from app.tasks import stripe_events

    monkeypatch.setattr(stripe_events, "EVENT_RETRY", Retry(max=3))  # retry at once
    real_post_entry = payments.ledger.post_entry
    crashes = []

    def post_entry_then_crash(**kwargs):
        result = real_post_entry(**kwargs)
        if not crashes:
            crashes.append(kwargs["idempotency_key"])
            raise SystemError("worker killed mid-job")
        return result

    monkeypatch.setattr(payments.ledger, "post_entry", post_entry_then_crash)
    purchase_id, secret = shop.start("5")
    shop.pay(purchase_id, secret, CARD_OK)
    wait_for_events(app, 1)
    run_worker(app)  # the first run crashes, the retry is queued and run in the same burst
    assert crashes, "the crash was not injected"
    assert shop.balance() == FIVE_CREDITS
    assert ledger_rows(app) == 1
    with app.app_context():
        event = db.session.scalar(select(StripeEvent))
        assert event.processed_at is not None and event.error is None
    assert_books_balance(app)


def test_a_declined_attempt_then_a_successful_retry(app, shop):
    purchase_id, secret = shop.start("5")
    declined = shop.pay(purchase_id, secret, CARD_DECLINED)
    assert declined.status_code == 402
    page = declined.get_data(as_text=True)
    assert "Your card was declined." in page
    row = shop.purchase(purchase_id)
    assert row.status == "failed" and row.attempts == 1 and row.is_retryable
    # The page offers a fresh card form: the declined card's SetupIntent is used up.
    retry_secret = shop.client_secret(page)
    assert retry_secret != secret
    assert shop.pay(purchase_id, retry_secret, CARD_OK).status_code == 200
    wait_for_events(app, 2)  # the failure and the success
    run_worker(app)
    row = shop.purchase(purchase_id)
    assert row.status == "succeeded" and row.attempts == 2
    assert shop.balance() == FIVE_CREDITS
    assert ledger_rows(app) == 1


def test_a_three_d_secure_card(app, shop):
    purchase_id, secret = shop.start("5")
    response = shop.pay(purchase_id, secret, CARD_3DS)
    assert response.status_code == 200
    intent_secret = shop.intent_secret(response.get_data(as_text=True))
    assert shop.purchase(purchase_id).status == "pending"
    shop.js.confirm_card_payment(intent_secret, success=True)
    checked = shop.browser.post_form(
        "/dashboard", {}, action=f"/credits/{purchase_id}/check"
    ).get_data(as_text=True)
    assert 'id="purchase-status"' in checked
    wait_for_events(app, 1)
    run_worker(app)
    assert shop.balance() == FIVE_CREDITS
    assert_books_balance(app)


def test_a_failed_three_d_secure_challenge_can_be_retried(app, shop):
    purchase_id, secret = shop.start("5")
    response = shop.pay(purchase_id, secret, CARD_3DS)
    shop.js.confirm_card_payment(shop.intent_secret(response.get_data(as_text=True)), success=False)
    checked = shop.browser.post_form("/dashboard", {}, action=f"/credits/{purchase_id}/check")
    assert checked.status_code == 402
    assert "failed authentication" in checked.get_data(as_text=True)
    row = shop.purchase(purchase_id)
    assert row.status == "failed" and row.is_retryable
    assert shop.balance() == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("4.99", "The minimum purchase is $5.00."),
        ("0", "The minimum purchase is $5.00."),
        ("-5", "The minimum purchase is $5.00."),
        ("five", "Enter an amount in dollars"),
        ("1e3", "Enter an amount in dollars"),
        ("1000.01", "The most you can buy at once is $1,000.00."),
        ("5.001", "whole cents"),
        ("", "Enter an amount in dollars"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_recorded(app, shop, amount, message):
    response = shop.browser.post_form("/credits", {"amount": amount})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Purchase)) == 0


def test_amounts_with_a_dollar_sign_and_cents_are_accepted(app, shop):
    purchase_id, _ = shop.start("$12.34")
    assert shop.purchase(purchase_id).amount_cents == 1234


def test_another_accounts_purchase_is_a_plain_404(app, shop, make_account, client):
    purchase_id, secret = shop.start("5")
    payment_method = shop.js.confirm_card_setup(secret, CARD_OK)
    shop.browser.logout()
    make_account("other@example.com")
    shop.browser.login("other@example.com")
    for path in (f"/credits/{purchase_id}", f"/credits/{purchase_id}/status"):
        assert shop.browser.get(path).status_code == 404
    assert shop.confirm(purchase_id, payment_method).status_code == 404
    assert shop.confirm(999_999, payment_method).status_code == 404
    row = shop.purchase(purchase_id)
    assert row.attempts == 0 and row.stripe_payment_intent_id is None
    assert shop.emulator.api("GET", "payment_intents")["data"] == []


def test_a_forged_card_reference_is_refused(app, shop):
    purchase_id, _ = shop.start("5")
    response = shop.confirm(purchase_id, "pm_x'; drop table")
    assert response.status_code == 400
    assert shop.purchase(purchase_id).attempts == 0


def test_a_paid_purchase_cannot_be_paid_again(app, shop):
    purchase_id, secret = shop.start("5")
    shop.pay(purchase_id, secret, CARD_OK)
    wait_for_events(app, 1)
    run_worker(app)
    again = shop.confirm(purchase_id, shop.js.confirm_card_setup(secret, CARD_OK))
    assert again.status_code == 409
    assert len(shop.emulator.api("GET", "payment_intents")["data"]) == 1


def test_a_suspended_account_cannot_buy(app, shop):
    from app.services.accounts import suspend

    purchase_id, secret = shop.start("5")
    with app.app_context():
        suspend(db.session.scalar(select(Account)), reason="test", actor_id=None)
        db.session.commit()
    shop.browser.login(shop.email)
    assert (
        shop.browser.post_form("/dashboard", {"amount": "5"}, action="/credits").status_code == 403
    )
    payment_method = shop.js.confirm_card_setup(secret, CARD_OK)
    assert shop.confirm(purchase_id, payment_method).status_code == 403
    assert shop.emulator.api("GET", "payment_intents")["data"] == []


def test_without_stripe_settings_nothing_is_sold(app, make_account, browser):
    make_account("buyer@example.com")
    browser.login("buyer@example.com")
    assert "not set up" in browser.get("/credits").get_data(as_text=True)
    assert browser.post_form("/credits", {"amount": "5"}).status_code == 503


def test_the_payment_page_admits_stripe_js_and_nothing_else(app, shop):
    purchase_id, _ = shop.start("5")
    response = shop.browser.get(f"/credits/{purchase_id}")
    policy = response.headers["Content-Security-Policy"]
    assert f"script-src 'self' {shop.emulator.url};" in policy
    assert "unsafe-inline" not in policy
    assert shop.browser.get("/dashboard").headers["Content-Security-Policy"].count("127.0.0.1") == 0


def _paid_purchase(app, shop, amount: str = "5") -> Purchase:
    purchase_id, secret = shop.start(amount)
    shop.pay(purchase_id, secret, CARD_OK)
    wait_for_events(app, 1)
    run_worker(app)
    return shop.purchase(purchase_id)


def test_a_refund_reported_by_stripe_debits_once(app, shop, client):
    row = _paid_purchase(app, shop, "10")
    refund = shop.emulator.api(
        "POST", "refunds", payment_intent=row.stripe_payment_intent_id, amount=300
    )
    intent = shop.emulator.api("GET", f"payment_intents/{row.stripe_payment_intent_id}")
    charge = intent["latest_charge"]
    event = event_of("charge.refunded", charge)
    for _ in range(3):
        post_signed(client, event)
    run_worker(app)
    assert shop.balance() == 7_000_000_000
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "refund"))
        assert entry.idempotency_key == f"refund:{refund['id']}"
    assert shop.purchase(row.id).refunded_cents == 300
    assert_books_balance(app)


def test_a_refund_of_spent_credit_goes_negative_and_flags(app, shop, client):
    from app.services.ledger import post_entry

    row = _paid_purchase(app, shop, "5")
    with app.app_context():
        post_entry(
            account_id=row.account_id,
            kind="usage",
            amount_nanocredits=-4_000_000_000,
            idempotency_key="spent",
        )
        db.session.commit()
    shop.emulator.api("POST", "refunds", payment_intent=row.stripe_payment_intent_id)
    charge = shop.emulator.api("GET", f"payment_intents/{row.stripe_payment_intent_id}")[
        "latest_charge"
    ]
    post_signed(client, event_of("charge.refunded", charge))
    run_worker(app)
    assert shop.balance() == -4_000_000_000
    with app.app_context():
        assert db.session.scalar(select(Account.flagged_reason)) == "negative balance"
    assert_books_balance(app)


def _dispute(charge: dict, status: str = "needs_response") -> dict:
    """A dispute of a real charge, as Stripe sends it (localstripe has no disputes)."""
    return {
        "id": f"dp_{charge['id'][3:]}",
        "object": "dispute",
        "amount": charge["amount"],
        "currency": charge["currency"],
        "charge": charge["id"],
        "payment_intent": charge["payment_intent"],
        "reason": "fraudulent",
        "status": status,
    }


def test_a_dispute_suspends_debits_and_a_won_dispute_credits_back(app, shop, client):
    from app.models import AuditLogEntry

    row = _paid_purchase(app, shop, "5")
    charge = shop.emulator.api("GET", f"payment_intents/{row.stripe_payment_intent_id}")[
        "latest_charge"
    ]
    created = event_of("charge.dispute.created", _dispute(charge))
    for _ in range(3):
        post_signed(client, created)
    run_worker(app)
    assert shop.balance() == 0
    with app.app_context():
        account = db.session.scalar(select(Account))
        assert account.status == "suspended" and account.status_reason == "payment dispute"
        audit = db.session.scalar(
            select(AuditLogEntry).where(AuditLogEntry.action == "account.suspend")
        )
        assert audit.reason == "payment dispute" and audit.actor_id is None
    # The suspension ended the session; signed in again, the history shows nothing refundable.
    shop.browser.login(shop.email)
    assert ">$0.00<" in shop.browser.get("/credits/history").get_data(as_text=True)
    won = event_of("charge.dispute.closed", _dispute(charge, status="won"))
    for _ in range(3):
        post_signed(client, won)
    run_worker(app)
    assert shop.balance() == FIVE_CREDITS
    assert shop.purchase(row.id).disputed_cents == 0
    assert ledger_rows(app, "dispute") == 2
    assert_books_balance(app)


def test_a_lost_dispute_keeps_the_debit(app, shop, client):
    row = _paid_purchase(app, shop, "5")
    charge = shop.emulator.api("GET", f"payment_intents/{row.stripe_payment_intent_id}")[
        "latest_charge"
    ]
    post_signed(client, event_of("charge.dispute.created", _dispute(charge)))
    post_signed(client, event_of("charge.dispute.closed", _dispute(charge, "lost")))
    run_worker(app)
    assert shop.balance() == 0
    assert ledger_rows(app, "dispute") == 1


def test_a_canceled_intent_marks_the_attempt_failed_and_leaves_it_payable(app, shop, client):
    purchase_id, secret = shop.start("5")
    response = shop.pay(purchase_id, secret, CARD_3DS)  # waits for 3-D Secure
    assert response.status_code == 200
    row = shop.purchase(purchase_id)
    intent = shop.emulator.api("POST", f"payment_intents/{row.stripe_payment_intent_id}/cancel")
    post_signed(client, event_of("payment_intent.canceled", intent))
    run_worker(app)
    row = shop.purchase(purchase_id)
    assert row.status == "failed" and row.is_retryable
    assert row.failure_message == "The payment was canceled."
    page = shop.browser.get(f"/credits/{purchase_id}").get_data(as_text=True)
    assert "data-client-secret" in page  # a fresh card form
    assert shop.balance() == 0


def test_an_event_for_an_unknown_purchase_credits_nothing(app, shop, client):
    purchase_id, secret = shop.start("5")
    shop.pay(purchase_id, secret, CARD_OK)
    wait_for_events(app, 1)
    event = shop.emulator.events("payment_intent.succeeded")[0]
    forged = json.loads(json.dumps(event))
    forged["id"] = "evt_other"
    forged["data"]["object"]["metadata"]["purchase_id"] = "424242"
    post_signed(client, forged)
    with app.app_context():
        db.session.execute(StripeEvent.__table__.delete().where(StripeEvent.id == event["id"]))
        db.session.commit()
    run_worker(app)
    assert shop.balance() == 0
    with app.app_context():
        assert db.session.get(StripeEvent, "evt_other").error.startswith("flagged")


def test_a_payment_posted_twice_charges_once(app, shop):
    purchase_id, secret = shop.start("5")
    payment_method = shop.js.confirm_card_setup(secret, CARD_OK)
    assert shop.confirm(purchase_id, payment_method).status_code == 200
    again = shop.confirm(purchase_id, payment_method)  # a double click, or the back button
    assert again.status_code == 200
    assert 'id="purchase-status"' in again.get_data(as_text=True)
    assert len(shop.emulator.api("GET", "payment_intents")["data"]) == 1
    assert shop.purchase(purchase_id).attempts == 1
    wait_for_events(app, 1)
    run_worker(app)
    assert shop.balance() == FIVE_CREDITS


def test_reloading_during_three_d_secure_asks_for_it_again(app, shop):
    purchase_id, secret = shop.start("5")
    first = shop.pay(purchase_id, secret, CARD_3DS)
    intent_secret = shop.intent_secret(first.get_data(as_text=True))
    reloaded = shop.browser.get(f"/credits/{purchase_id}").get_data(as_text=True)
    assert shop.intent_secret(reloaded) == intent_secret
    assert "data-client-secret" not in reloaded  # no second card form, no second charge


def test_reconciliation_without_stripe_settings_does_nothing(app_ctx):
    from app.tasks.stripe_events import reconcile_payments_job

    assert reconcile_payments_job() == {"skipped": "STRIPE_SECRET_KEY is not set"}
    assert db.session.scalar(select(func.count()).select_from(ReconciliationRun)) == 0
