"""Admin pages for Stripe money: purchases, webhook events and their retry, flags, reconciliation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select

from app.extensions import db, get_queue
from app.models import Account, AuditLogEntry, LedgerEntry, Purchase, ReconciliationRun, StripeEvent
from app.models.types import utcnow
from tests.helpers import Browser

ADMIN_PATHS = [
    ("get", "/admin/purchases"),
    ("get", "/admin/purchases?status=flagged"),
    ("get", "/admin/webhooks"),
    ("get", "/admin/webhooks?problems=1"),
    ("post", "/admin/webhooks/evt_1/retry"),
    ("get", "/admin/flagged"),
    ("post", "/admin/accounts/1/clear-flag"),
    ("get", "/admin/reconciliation"),
    ("post", "/admin/reconciliation/run"),
]


def add(app, *rows):
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def succeeded_payload(event_id: str, account_id: int, purchase_id: int, amount: int = 500) -> dict:
    return {
        "id": event_id,
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": f"pi_{purchase_id}",
                "amount": amount,
                "currency": "usd",
                "metadata": {"account_id": str(account_id), "purchase_id": str(purchase_id)},
            }
        },
    }


def audit_actions(app) -> list[tuple[str, int | None, dict | None]]:
    with app.app_context():
        return [
            (e.action, e.target_account_id, e.details)
            for e in db.session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id))
        ]


def billing_count(app) -> int:
    with app.app_context():
        return get_queue("billing").count


def run_billing_worker(app) -> None:
    with app.app_context():
        queue = get_queue("billing")
        SimpleWorker([queue], connection=queue.connection).work(burst=True)


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_admin_money_pages_are_404_to_anonymous_and_customers(app, make_account, method, path):
    customer_id = make_account("customer@example.com")
    add(app, StripeEvent(id="evt_1", type="ping", payload={}, error="boom"))
    with app.app_context():
        db.session.get(Account, customer_id).flagged_reason = "negative balance"
        db.session.commit()
    anonymous = app.test_client()
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    for client in (anonymous, customer.client):
        response = getattr(client, method)(path, data={"reason": "x"})
        assert response.status_code == 404
    with app.app_context():
        assert db.session.get(StripeEvent, "evt_1").error == "boom"
        assert db.session.get(Account, customer_id).flagged_reason == "negative balance"
    assert audit_actions(app) == []
    assert billing_count(app) == 0


def test_purchases_list_shows_money_and_stripe_ids_and_filters_by_status(app, admin, make_account):
    alice = make_account("alice@example.com")
    bob = make_account("bob@example.com")
    now = utcnow()
    paid, flagged = add(
        app,
        Purchase(
            account_id=alice,
            amount_cents=2_550,
            status="succeeded",
            attempts=2,
            refunded_cents=1_000,
            disputed_cents=275,
            stripe_setup_intent_id="seti_alice",
            stripe_payment_intent_id="pi_alice",
            failure_message="Your card was declined.",
            created_at=now - timedelta(hours=2),
            succeeded_at=now - timedelta(hours=1),
        ),
        Purchase(
            account_id=bob,
            amount_cents=123_456,
            status="flagged",
            flagged_reason="amount 100 usd",
            stripe_payment_intent_id="pi_bob",
            created_at=now,
        ),
    )
    page = admin.get("/admin/purchases").get_data(as_text=True)
    for text in (
        "$25.50",
        "$10.00",
        "$2.75",
        "$1,234.56",
        "seti_alice",
        "pi_alice",
        "pi_bob",
        "Your card was declined.",
        "amount 100 usd",
        f'href="/admin/accounts/{alice}"',
        f'href="/admin/accounts/{bob}"',
    ):
        assert text in page, text
    assert page.index("bob@example.com") < page.index("alice@example.com")  # newest first
    # The sub-navigation is on every admin page, this one marked current.
    assert 'href="/admin/purchases" aria-current="page"' in page
    for path in ("/admin/accounts", "/admin/webhooks", "/admin/flagged", "/admin/reconciliation"):
        assert f'href="{path}"' in page

    only_flagged = admin.get("/admin/purchases?status=flagged").get_data(as_text=True)
    assert "pi_bob" in only_flagged and "pi_alice" not in only_flagged
    fragment = admin.get("/admin/purchases?status=succeeded", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="purchases-table"')
    assert "pi_alice" in html and "pi_bob" not in html
    assert "HX-Request" in fragment.headers["Vary"]
    assert "pi_bob" in admin.get("/admin/purchases?status=bogus&page=-2").get_data(as_text=True)
    assert "No purchase is expired" in admin.get("/admin/purchases?status=expired").get_data(
        as_text=True
    )
    assert paid != flagged


def test_purchases_are_paged_by_fifty(app, admin, make_account):
    alice = make_account("alice@example.com")
    now = utcnow()
    add(
        app,
        *[
            Purchase(
                account_id=alice,
                amount_cents=100 + i,
                stripe_payment_intent_id=f"pi_{i:03d}x",
                created_at=now - timedelta(minutes=i),
            )
            for i in range(51)
        ],
    )
    first = admin.get("/admin/purchases").get_data(as_text=True)
    assert "pi_000x" in first and "pi_049x" in first and "pi_050x" not in first
    assert "Page 1 of 2" in first
    second = admin.get("/admin/purchases?page=2").get_data(as_text=True)
    assert "pi_050x" in second and "pi_000x" not in second


def test_webhooks_list_and_the_attention_filter(app, admin):
    now = utcnow()
    add(
        app,
        StripeEvent(
            id="evt_clean",
            type="charge.refunded",
            payload={},
            received_at=now - timedelta(minutes=3),
            processed_at=now,
        ),
        StripeEvent(
            id="evt_failed",
            type="payment_intent.succeeded",
            payload={},
            received_at=now - timedelta(minutes=2),
            processed_at=None,
            error="OperationalError: database is locked",
        ),
        StripeEvent(
            id="evt_waiting",
            type="payment_intent.payment_failed",
            payload={},
            received_at=now - timedelta(minutes=1),
        ),
    )
    page = admin.get("/admin/webhooks").get_data(as_text=True)
    assert page.index("evt_waiting") < page.index("evt_failed") < page.index("evt_clean")
    assert "OperationalError: database is locked" in page
    assert "charge.refunded" in page
    # Retry is offered where it can do something, and never for a cleanly processed event.
    assert "/admin/webhooks/evt_failed/retry" in page
    assert "/admin/webhooks/evt_waiting/retry" in page
    assert "/admin/webhooks/evt_clean/retry" not in page
    problems = admin.get("/admin/webhooks?problems=1", headers={"HX-Request": "true"})
    html = problems.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="webhooks-table"')
    assert "evt_failed" in html and "evt_waiting" in html and "evt_clean" not in html


def test_retry_of_a_failed_event_requeues_it_and_credits_once(app, admin, make_account):
    buyer = make_account("buyer@example.com")
    (purchase_id,) = add(app, Purchase(account_id=buyer, amount_cents=500, status="pending"))
    add(
        app,
        StripeEvent(
            id="evt_1",
            type="payment_intent.succeeded",
            payload=succeeded_payload("evt_1", buyer, purchase_id),
            processed_at=None,
            error="OperationalError: the database went away",
        ),
    )
    response = admin.post_form(
        "/admin/webhooks",
        {},
        action="/admin/webhooks/evt_1/retry",
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    row = response.get_data(as_text=True)
    assert row.lstrip().startswith('<tr id="event-evt_1"')
    assert "queued again" in row
    assert billing_count(app) == 1
    with app.app_context():
        event = db.session.get(StripeEvent, "evt_1")
        assert event.processed_at is None and event.error is None
    assert audit_actions(app) == [
        (
            "stripe_event.retry",
            None,
            {"event": "evt_1", "error": ("OperationalError: the database went away")},
        )
    ]
    with app.app_context():
        assert db.session.scalar(select(AuditLogEntry.actor_id)) == db.session.scalar(
            select(Account.id).where(Account.email == "admin@example.com")
        )

    run_billing_worker(app)
    with app.app_context():
        event = db.session.get(StripeEvent, "evt_1")
        assert event.processed_at is not None and event.error is None
        assert db.session.get(Purchase, purchase_id).status == "succeeded"
        assert db.session.get(Account, buyer).balance_nanocredits == 5_000_000_000
    assert billing_count(app) == 0

    # Processed cleanly now: a second retry is refused and nothing is queued or credited again.
    again = admin.post_form("/admin/webhooks", {}, action="/admin/webhooks/evt_1/retry")
    assert again.status_code == 409
    assert "nothing to retry" in again.get_data(as_text=True)
    fragment = admin.post_form(
        "/admin/webhooks", {}, action="/admin/webhooks/evt_1/retry", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 409
    assert fragment.get_data(as_text=True).lstrip().startswith('<tr id="event-evt_1"')
    assert billing_count(app) == 0
    with app.app_context():
        assert db.session.get(Account, buyer).balance_nanocredits == 5_000_000_000
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    assert len(audit_actions(app)) == 1


def test_retry_of_an_event_that_already_credited_does_not_credit_twice(app, admin, make_account):
    """Crediting committed, then marking the event failed (say the worker died): retry is safe."""
    buyer = make_account("buyer@example.com")
    (purchase_id,) = add(app, Purchase(account_id=buyer, amount_cents=500, status="pending"))
    add(
        app,
        StripeEvent(
            id="evt_1",
            type="payment_intent.succeeded",
            payload=succeeded_payload("evt_1", buyer, purchase_id),
        ),
    )
    from app.services.payments import process_event

    with app.app_context():
        process_event("evt_1")
        event = db.session.get(StripeEvent, "evt_1")
        event.error = "TimeoutError: after the credit"
        db.session.commit()
    done = admin.post_form("/admin/webhooks", {}, action="/admin/webhooks/evt_1/retry")
    assert done.status_code == 302
    assert "queued again" in admin.get(done.headers["Location"]).get_data(as_text=True)
    run_billing_worker(app)
    with app.app_context():
        assert db.session.get(StripeEvent, "evt_1").processed_at is not None
        assert db.session.get(Account, buyer).balance_nanocredits == 5_000_000_000
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1


def test_retry_needs_csrf_and_a_known_event(app, admin):
    add(app, StripeEvent(id="evt_1", type="ping", payload={}, error="boom"))
    assert admin.client.post("/admin/webhooks/evt_1/retry").status_code == 400
    missing = admin.post_form("/admin/webhooks", {}, action="/admin/webhooks/evt_nope/retry")
    assert missing.status_code == 404
    assert billing_count(app) == 0
    assert audit_actions(app) == []


def test_flagged_page_lists_accounts_and_purchases(app, admin, make_account):
    alice = make_account("alice@example.com")
    make_account("bob@example.com")
    with app.app_context():
        account = db.session.get(Account, alice)
        account.flagged_reason = "balance below zero after settlement"
        account.balance_nanocredits = -1_500_000_000
        db.session.commit()
    add(
        app,
        Purchase(
            account_id=alice,
            amount_cents=900,
            status="flagged",
            flagged_reason="amount 100 eur",
            stripe_payment_intent_id="pi_odd",
        ),
        Purchase(account_id=alice, amount_cents=700, status="succeeded"),
    )
    page = admin.get("/admin/flagged").get_data(as_text=True)
    assert "alice@example.com" in page and "bob@example.com" not in page
    assert "balance below zero after settlement" in page
    assert "-1.50" in page
    assert "amount 100 eur" in page and "$9.00" in page and "pi_odd" in page
    assert "$7.00" not in page
    assert f"/admin/accounts/{alice}/clear-flag" in page


def test_clearing_a_flag_needs_a_reason_and_is_audited(app, admin, make_account):
    alice = make_account("alice@example.com")
    with app.app_context():
        db.session.get(Account, alice).flagged_reason = "payment: amount 100 usd"
        db.session.commit()
    action = f"/admin/accounts/{alice}/clear-flag"
    refused = admin.post_form("/admin/flagged", {"reason": "   "}, action=action)
    assert refused.status_code == 400
    assert "Give a reason." in refused.get_data(as_text=True)
    refused = admin.post_form("/admin/flagged", {}, action=action, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    assert refused.get_data(as_text=True).lstrip().startswith(f'<tr id="flagged-account-{alice}"')
    with app.app_context():
        assert db.session.get(Account, alice).flagged_reason == "payment: amount 100 usd"
    assert audit_actions(app) == []

    done = admin.post_form(
        "/admin/flagged",
        {"reason": "checked in Stripe: a test charge"},
        action=action,
        headers={"HX-Request": "true"},
    )
    assert done.status_code == 200
    assert "is cleared" in done.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Account, alice).flagged_reason is None
        entry = db.session.scalar(select(AuditLogEntry))
        assert entry.action == "account.clear_flag"
        assert entry.target_account_id == alice
        assert entry.reason == "checked in Stripe: a test charge"
        assert entry.details == {"flag": "payment: amount 100 usd"}
        assert entry.actor.email == "admin@example.com"
    assert "alice@example.com" not in admin.get("/admin/flagged").get_data(as_text=True)
    assert "checked in Stripe" in admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)

    again = admin.post_form("/admin/flagged", {"reason": "twice"}, action=action)
    assert again.status_code == 409
    assert len(audit_actions(app)) == 1
    missing = admin.post_form(
        "/admin/flagged", {"reason": "x"}, action="/admin/accounts/999999/clear-flag"
    )
    assert missing.status_code == 404


def test_clear_flag_without_javascript_redirects_with_a_notice(app, admin, make_account):
    alice = make_account("alice@example.com")
    with app.app_context():
        db.session.get(Account, alice).flagged_reason = "negative balance"
        db.session.commit()
    done = admin.post_form(
        "/admin/flagged", {"reason": "topped up"}, action=f"/admin/accounts/{alice}/clear-flag"
    )
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/admin/flagged")
    assert "The flag on alice@example.com is cleared." in admin.get("/admin/flagged").get_data(
        as_text=True
    )


def test_reconciliation_page_shows_the_last_ten_runs(app, admin):
    with app.app_context():
        admin_id = db.session.scalar(select(Account.id).where(Account.is_admin.is_(True)))
    now = utcnow()
    runs = [
        ReconciliationRun(
            started_at=now - timedelta(minutes=10 * i),
            finished_at=now - timedelta(minutes=10 * i - 1),
            intents_examined=1000 + i,
        )
        for i in range(12)
    ]
    runs[0].actor_id = admin_id
    runs[0].credited, runs[0].flagged, runs[0].expired = 7, 3, 2
    runs[0].findings = [{"payment_intent": "pi_found", "purchase": "12", "outcome": "credited"}]
    runs[1].error = "APIConnectionError: Stripe is unreachable"
    add(app, *runs)
    page = admin.get("/admin/reconciliation").get_data(as_text=True)
    assert "1000" in page and "1009" in page and "1010" not in page and "1011" not in page
    assert page.index("1000") < page.index("1009")
    assert "APIConnectionError: Stripe is unreachable" in page
    assert "<code>pi_found</code> · purchase 12 · credited" in page
    assert "admin@example.com" in page.split("Latest runs")[1]
    assert "scheduler" in page
    assert "/admin/reconciliation/run" in page


def test_run_now_queues_reconciliation_and_is_audited(app, admin, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_test_run_now")
    done = admin.post_form("/admin/reconciliation", {}, action="/admin/reconciliation/run")
    assert done.status_code == 302
    assert "Reconciliation queued" in admin.get(done.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        admin_id = db.session.scalar(select(Account.id).where(Account.is_admin.is_(True)))
        jobs = get_queue("billing").get_jobs()
        assert [job.func_name for job in jobs] == ["app.tasks.stripe_events.reconcile_payments_job"]
        assert jobs[0].args == (admin_id,)
    assert audit_actions(app) == [("reconciliation.run", None, None)]

    fragment = admin.post_form(
        "/admin/reconciliation",
        {},
        action="/admin/reconciliation/run",
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 200
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="reconciliation"')
    assert "Reconciliation queued" in html
    assert billing_count(app) == 2
    assert len(audit_actions(app)) == 2
    assert admin.client.post("/admin/reconciliation/run").status_code == 400  # no CSRF token
    assert billing_count(app) == 2
