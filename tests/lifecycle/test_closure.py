"""Terms §10: a customer may close their account; OneKey may terminate one, refunding unused credit
at its discretion. Either way the keys stop at once, requests in flight are billed, the approved
refund is made with Stripe, the rest is forfeited through one ledger entry (balance exactly zero)
and the account can no longer sign in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db, get_queue
from app.models import Account, AccountRequest, ApiKey, AuditLogEntry, Hold, LedgerEntry, Purchase
from app.models.types import utcnow
from app.services import keys, ledger, lifecycle, refunds
from app.services.accounts import AccountError
from app.services.refunds import RefundError
from app.tasks import lifecycle as lifecycle_tasks
from app.tasks.lifecycle import process_request_job, resume_stalled_requests_job
from tests.helpers import TEST_PASSWORD
from tests.stripe_emulator import event_of, post_signed, run_worker

CREDIT = 1_000_000_000


def _make_key(desk) -> int:
    def make():
        key, _ = keys.create_key(db.session.get(Account, desk.account_id), name="app")
        return key.id

    return desk.call(make)


def _close(desk, refund_cents: int, password: str = TEST_PASSWORD) -> int:
    def close():
        account = db.session.get(Account, desk.account_id)
        return lifecycle.request_closure(
            account, password=password, confirmed=True, refund_cents=refund_cents
        ).id

    return desk.call(close)


def _approve(desk, request_id: int, cents: int | None = None) -> None:
    def decide():
        request = db.session.get(AccountRequest, request_id)
        refunds.approve(request, amount_cents=cents, reason="asked for", actor_id=desk.admin_id)

    desk.call(decide)
    with desk.app.app_context():
        lifecycle_tasks.enqueue_request(request_id)


def _terminate(desk, refund_cents: int, message: str | None = "Repeated abuse.") -> int:
    def terminate():
        account = db.session.get(Account, desk.account_id)
        return lifecycle.terminate(
            account,
            reason="key reselling, ticket 42",
            customer_message=message,
            refund_cents=refund_cents,
            actor_id=desk.admin_id,
        ).id

    request_id = desk.call(terminate)
    with desk.app.app_context():
        lifecycle_tasks.enqueue_request(request_id)
    return request_id


def _entries(app, kind: str) -> list[int]:
    with app.app_context():
        amounts = db.session.scalars(
            select(LedgerEntry.amount_nanocredits)
            .where(LedgerEntry.kind == kind)
            .order_by(LedgerEntry.id)
        ).all()
        db.session.remove()
        return list(amounts)


def _refunds_at_stripe(desk) -> list[int]:
    return sorted(refund["amount"] for refund in desk.shop.emulator.api("GET", "refunds")["data"])


def test_closing_refunds_the_chosen_credit_forfeits_the_rest_and_ends_the_account(app, desk):
    first = desk.shop.buy("5")
    second = desk.shop.buy("6")
    desk.call(
        lambda: ledger.grant_credits(desk.account_id, 3 * CREDIT, note="promo", idempotency_key="g")
    )
    key_id = _make_key(desk)
    with app.app_context():
        assert refunds.refundable_cents_by_purchase(desk.account_id) == {second: 600, first: 500}
    request_id = _close(desk, 600)
    account_id = desk.account_id
    # The account stops spending at once: its key is revoked, it cannot make another or buy.
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is not None
        with pytest.raises(ledger.KeyNotUsable):
            ledger.place_hold(
                account_id=account_id,
                api_key_id=key_id,
                amount_nanocredits=1,
                expires_at=utcnow() + timedelta(hours=1),
            )
        db.session.rollback()
        with pytest.raises(keys.KeyRequestError, match="being closed"):
            keys.create_key(db.session.get(Account, account_id), name="another")
        db.session.rollback()
    assert desk.shop.browser.post_form("/credits", {"amount": "5"}).status_code == 400
    assert desk.account().held_nanocredits == 6 * CREDIT
    assert desk.request(request_id).state == "requested"
    _approve(desk, request_id)
    mail = desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 600
    assert _refunds_at_stripe(desk) == [600]
    account = desk.account()
    assert account.status == "closed"
    assert account.balance_nanocredits == 0 and account.held_nanocredits == 0
    assert _entries(app, "forfeit") == [-8 * CREDIT]  # 5 + 3 not refunded
    assert request.forfeited_nanocredits == 8 * CREDIT
    # Sign-in ends: the session is gone and the address cannot sign in again.
    assert desk.shop.browser.get("/dashboard").status_code == 302
    assert desk.shop.browser.login(desk.shop.email).status_code == 403
    assert "Your OneKey account is closed" in mail
    assert "$6.00" in mail and "8.00 credits" in mail
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 5
        actions = db.session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id))
        assert {"closure.request", "closure.approve", "account.closed"} <= set(actions)
    desk.books_balance()


def test_closing_needs_the_password_and_a_confirmation(app, desk):
    desk.shop.buy("5")
    key_id = _make_key(desk)
    with app.app_context():
        account = db.session.get(Account, desk.account_id)
        with pytest.raises(AccountError) as wrong:
            lifecycle.request_closure(account, password="wrong", confirmed=True, refund_cents=0)
        assert set(wrong.value.errors) == {"password"}
        with pytest.raises(AccountError) as unconfirmed:
            lifecycle.request_closure(
                account, password=TEST_PASSWORD, confirmed=False, refund_cents=0
            )
        assert set(unconfirmed.value.errors) == {"confirm"}
        db.session.rollback()
        assert db.session.get(ApiKey, key_id).revoked_at is None
        assert db.session.scalar(select(func.count()).select_from(AccountRequest)) == 0


def test_a_closure_waits_for_requests_in_flight_and_bills_them(app, desk):
    desk.shop.buy("5")
    key_id = _make_key(desk)

    def start_request():
        return ledger.place_hold(
            account_id=desk.account_id,
            api_key_id=key_id,
            amount_nanocredits=2 * CREDIT,
            expires_at=utcnow() + timedelta(hours=1),
        ).id

    in_flight = desk.call(start_request)
    request_id = _close(desk, 300)  # 5 − 2 held: at most 3 refundable now
    _approve(desk, request_id)
    desk.work()
    request = desk.request(request_id)
    assert request.state == "processing" and request.lease_until is None
    assert request.waiting_for == "1 request in flight to be billed"
    with app.app_context():
        assert get_queue("lifecycle").scheduled_job_registry.count == 1
    assert _refunds_at_stripe(desk) == []
    # The request in flight finishes and is billed; the closure goes on.
    desk.call(lambda: ledger.settle_hold(in_flight, CREDIT + 7))
    with app.app_context():
        assert process_request_job(request_id) == "done"
        db.session.remove()
    desk.work()
    assert _refunds_at_stripe(desk) == [300]
    account = desk.account()
    assert account.status == "closed" and account.balance_nanocredits == 0
    assert _entries(app, "usage") == [-(CREDIT + 7)]
    assert _entries(app, "forfeit") == [-(CREDIT - 7)]
    desk.books_balance()


def test_a_declined_closure_gives_the_reserved_credit_back(app, desk):
    desk.shop.buy("5")
    request_id = _close(desk, 500)

    def decline():
        request = db.session.get(AccountRequest, request_id)
        refunds.deny(
            request, reason="chargeback pending", actor_id=desk.admin_id, customer_message=None
        )

    desk.call(decline)
    account = desk.account()
    assert account.status == "active" and account.held_nanocredits == 0
    assert account.balance_nanocredits == 5 * CREDIT
    _make_key(desk)  # it may make keys again
    desk.books_balance()


def test_an_admin_cannot_close_their_account_themselves(app, desk):
    with app.app_context():
        admin = db.session.get(Account, desk.admin_id)
        with pytest.raises(RefundError, match="admin"):
            lifecycle.request_closure(admin, password=TEST_PASSWORD, confirmed=True, refund_cents=0)


def test_terminating_without_a_refund_forfeits_every_credit(app, desk):
    desk.shop.buy("5")
    key_id = _make_key(desk)
    request_id = _terminate(desk, 0)
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is not None
    mail = desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.refunded_cents == 0
    account = desk.account()
    assert account.status == "terminated" and account.balance_nanocredits == 0
    assert _entries(app, "forfeit") == [-5 * CREDIT]
    assert _refunds_at_stripe(desk) == []
    assert "Your OneKey account is terminated" in mail and "Repeated abuse." in mail
    assert "ticket 42" not in mail  # the audited reason stays with the admins
    desk.books_balance()


def test_terminating_with_a_discretionary_refund_of_older_credit(app, desk):
    purchase_id = desk.shop.buy("8")
    with app.app_context():
        db.session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id)
            .values(succeeded_at=utcnow() - timedelta(days=45))
        )
        db.session.commit()
    with pytest.raises(RefundError, match=r"At most \$8.00"):
        _terminate(desk, 801)
    _terminate(desk, 300)
    desk.work()
    assert _refunds_at_stripe(desk) == [300]
    assert _entries(app, "forfeit") == [-5 * CREDIT]
    assert desk.account().status == "terminated"
    desk.books_balance()


def test_a_dispute_suspended_account_can_be_terminated_with_no_refund(app, desk, client):
    purchase_id = desk.shop.buy("5")
    desk.shop.buy("6")
    intent = desk.shop.purchase(purchase_id).stripe_payment_intent_id
    charge = desk.shop.emulator.api("GET", f"payment_intents/{intent}")["latest_charge"]
    dispute = {
        "id": f"dp_{charge['id'][3:]}",
        "object": "dispute",
        "amount": charge["amount"],
        "currency": charge["currency"],
        "charge": charge["id"],
        "payment_intent": charge["payment_intent"],
        "status": "needs_response",
    }
    post_signed(client, event_of("charge.dispute.created", dispute))
    run_worker(app)
    assert desk.account().status == "suspended"
    mail = desk.work()
    assert "Your OneKey account is suspended: a payment dispute" in mail
    _terminate(desk, 0, message=None)
    mail = desk.work()
    account = desk.account()
    assert account.status == "terminated" and account.balance_nanocredits == 0
    assert _entries(app, "forfeit") == [-6 * CREDIT]
    assert "for a violation of the Terms of Service" in mail
    desk.books_balance()


def test_termination_supersedes_an_open_refund_request(app, desk):
    desk.shop.buy("5")
    refund_id = desk.call(
        lambda: (
            refunds.request_refund(db.session.get(Account, desk.account_id), amount_cents=500).id
        )
    )
    termination_id = _terminate(desk, 200)
    refund = desk.request(refund_id)
    assert refund.state == "denied" and refund.decided_by == desk.admin_id
    desk.work()
    assert desk.request(termination_id).state == "done"
    assert _refunds_at_stripe(desk) == [200]
    assert _entries(app, "forfeit") == [-3 * CREDIT]
    desk.books_balance()


def test_a_payment_credited_after_closure_is_flagged_for_a_refund(app, desk):
    purchase_id, secret = desk.shop.start("5")
    request_id = _close(desk, 0)
    _approve(desk, request_id)
    desk.work()
    assert desk.account().status == "closed"
    # The card form was submitted before the account closed; its success arrives after.
    payment_method = desk.shop.js.confirm_card_setup(secret)
    with app.app_context():
        from app.services import payments

        purchase = db.session.get(Purchase, purchase_id)
        purchase.attempts = 1
        db.session.commit()
        intent = payments.stripe_client().v1.payment_intents.create(
            params={
                "amount": 500,
                "currency": "usd",
                "customer": db.session.get(Account, desk.account_id).stripe_customer_id,
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "confirm": True,
                "metadata": {"account_id": str(desk.account_id), "purchase_id": str(purchase_id)},
            }
        )
        assert payments.apply_payment_succeeded(payments.as_dict(intent)) == "credited"
        db.session.commit()
        account = db.session.get(Account, desk.account_id)
        assert account.balance_nanocredits == 5 * CREDIT
        assert "after the account ended" in account.flagged_reason
    desk.books_balance()


def test_a_request_whose_worker_died_is_picked_up_by_the_sweep(app, desk):
    desk.shop.buy("5")
    request_id = desk.call(
        lambda: (
            refunds.request_refund(db.session.get(Account, desk.account_id), amount_cents=500).id
        )
    )

    def approve_and_die():
        request = db.session.get(AccountRequest, request_id)
        refunds.approve(request, amount_cents=None, reason="ok", actor_id=desk.admin_id)
        refunds.begin_run(request_id)  # a run took it, then its worker was killed

    desk.call(approve_and_die)
    with app.app_context():
        assert resume_stalled_requests_job() == 0  # its lease has not run out
        db.session.execute(
            update(AccountRequest)
            .where(AccountRequest.id == request_id)
            .values(
                lease_until=utcnow() - timedelta(seconds=1),
                updated_at=utcnow() - lifecycle.STALLED_AFTER,
            )
        )
        db.session.commit()
        assert resume_stalled_requests_job() == 1
        db.session.remove()
    desk.work()
    request = desk.request(request_id)
    assert request.state == "done" and request.runs == 2
    assert _refunds_at_stripe(desk) == [500]
    with app.app_context():
        assert (
            db.session.scalar(select(func.count()).select_from(Hold).where(Hold.status == "open"))
            == 0
        )
    desk.books_balance()
