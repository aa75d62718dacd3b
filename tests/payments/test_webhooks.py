"""Stripe webhooks: signed events are stored once and credit exactly once, whatever the delivery."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select

from app.extensions import db, get_queue
from app.models import Account, LedgerEntry, Purchase, StripeEvent
from app.services.ledger import check_invariants

SECRET = "whsec_test_secret"


@pytest.fixture
def webhook_secret(app):
    app.config["STRIPE_WEBHOOK_SECRET"] = SECRET
    yield SECRET
    app.config["STRIPE_WEBHOOK_SECRET"] = ""


def signed(payload: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def succeeded_event(
    event_id: str, purchase: Purchase, *, amount: int | None = None, currency="usd"
):
    intent = {
        "id": f"pi_{purchase.id}",
        "object": "payment_intent",
        "amount": purchase.amount_cents,
        "amount_received": purchase.amount_cents if amount is None else amount,
        "currency": currency,
        "status": "succeeded",
        "metadata": {"account_id": str(purchase.account_id), "purchase_id": str(purchase.id)},
    }
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": intent},
    }


@pytest.fixture
def purchase(app, make_account):
    account_id = make_account("buyer@example.com")
    with app.app_context():
        row = Purchase(account_id=account_id, amount_cents=500, status="pending")
        db.session.add(row)
        db.session.commit()
        db.session.refresh(row)
        db.session.expunge(row)
        return row


def deliver(client, event: dict, **kwargs):
    payload = json.dumps(event).encode()
    return client.post("/webhooks/stripe", data=payload, headers=signed(payload, **kwargs))


def run_worker(app):
    with app.app_context():
        queue = get_queue("billing")
        SimpleWorker([queue], connection=queue.connection).work(burst=True)


def balance(app, account_id: int) -> int:
    with app.app_context():
        return db.session.get(Account, account_id).balance_nanocredits


def test_each_event_five_times_out_of_order_credits_once(app, client, webhook_secret, purchase):
    first = succeeded_event("evt_1", purchase)
    second = succeeded_event("evt_2", purchase)  # Stripe may send a second event for one intent
    for event in [second, first, first, second, first, second, first, second, first, second]:
        assert deliver(client, event).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 2
        assert get_queue("billing").count == 2
    run_worker(app)
    run_worker(app)
    assert balance(app, purchase.account_id) == 5_000_000_000
    with app.app_context():
        assert db.session.get(Purchase, purchase.id).status == "succeeded"
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
        assert all(e.processed_at for e in db.session.scalars(select(StripeEvent)))
        assert check_invariants() == []


def test_a_job_run_twice_credits_once(app, client, webhook_secret, purchase):
    from app.tasks.stripe_events import process_stripe_event_job

    deliver(client, succeeded_event("evt_1", purchase))
    with app.app_context():
        process_stripe_event_job("evt_1")
        process_stripe_event_job("evt_1")
        db.session.execute(StripeEvent.__table__.update().values(processed_at=None))
        db.session.commit()
        process_stripe_event_job("evt_1")  # a crash after crediting, before marking: still once
    assert balance(app, purchase.account_id) == 5_000_000_000


def test_forged_signature_is_refused_and_nothing_stored(app, client, webhook_secret, purchase):
    event = succeeded_event("evt_1", purchase)
    assert deliver(client, event, secret="whsec_wrong").status_code == 400
    assert client.post("/webhooks/stripe", json=event).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


def test_replay_outside_the_tolerance_is_refused(app, client, webhook_secret, purchase):
    old = int(time.time()) - 3600
    assert deliver(client, succeeded_event("evt_1", purchase), timestamp=old).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


@pytest.mark.parametrize(("amount", "currency"), [(499, "usd"), (500, "eur"), (50_000, "usd")])
def test_amount_or_currency_mismatch_is_flagged_not_credited(
    app, client, webhook_secret, purchase, amount, currency
):
    deliver(client, succeeded_event("evt_1", purchase, amount=amount, currency=currency))
    run_worker(app)
    assert balance(app, purchase.account_id) == 0
    with app.app_context():
        row = db.session.get(Purchase, purchase.id)
        assert row.status == "flagged"
        assert db.session.get(Account, purchase.account_id).flagged_reason.startswith("payment")


def test_unknown_purchase_credits_nothing(app, client, webhook_secret, purchase):
    event = succeeded_event("evt_1", purchase)
    event["data"]["object"]["metadata"] = {"account_id": "999", "purchase_id": str(purchase.id)}
    deliver(client, event)
    run_worker(app)
    assert balance(app, purchase.account_id) == 0
    with app.app_context():
        assert db.session.get(StripeEvent, "evt_1").error.startswith("flagged")


def test_success_after_the_purchase_expired_still_credits(app, client, webhook_secret, purchase):
    with app.app_context():
        db.session.get(Purchase, purchase.id).status = "expired"
        db.session.commit()
    deliver(client, succeeded_event("evt_1", purchase))
    run_worker(app)
    assert balance(app, purchase.account_id) == 5_000_000_000


def test_webhook_without_a_configured_secret_accepts_nothing(app, client, purchase):
    assert deliver(client, succeeded_event("evt_1", purchase)).status_code == 503


def nested_event(levels: int) -> bytes:
    return (
        '{"id": "evt_deep", "object": "event", "type": "payment_intent.succeeded", "data": '
        + '{"object": ' * levels
        + "{}"
        + "}" * levels
        + "}"
    ).encode()


NOT_STRIPE_EVENTS = {
    "a list": b"[]",
    "a string": b'"payment_intent.succeeded"',
    "null": b"null",
    "an empty object": b"{}",
    "nested too deep to parse": b"[" * 50_000 + b"]" * 50_000,
    "nested too deep to store": nested_event(990),
    "a numeric id": b'{"id": 7, "type": "payment_intent.succeeded", "data": {}}',
    "a list for a type": b'{"id": "evt_1", "type": [], "data": {}}',
    "an id too long to store": b'{"id": "evt_' + b"x" * 300 + b'", "type": "t", "data": {}}',
    "a lone surrogate, escaped": b'{"id": "evt_1", "type": "t", "data": {"x": "\\ud800"}}',
    "a lone surrogate, raw": b'{"id": "evt_1", "type": "t", "data": {"x": "\xed\xa0\x80"}}',
}


@pytest.mark.parametrize("payload", list(NOT_STRIPE_EVENTS.values()), ids=list(NOT_STRIPE_EVENTS))
def test_a_signed_body_that_is_not_a_storable_stripe_event_is_a_400_and_nothing_stored(
    app, client, webhook_secret, payload
):
    response = client.post("/webhooks/stripe", data=payload, headers=signed(payload))
    assert response.status_code == 400
    assert response.is_json
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
        assert get_queue("billing").count == 0


def test_a_deep_but_ordinary_event_is_stored(app, client, webhook_secret):
    payload = nested_event(40)
    assert client.post("/webhooks/stripe", data=payload, headers=signed(payload)).status_code == 200
    with app.app_context():
        assert db.session.get(StripeEvent, "evt_deep") is not None


class UnreadableBody(io.RawIOBase):
    """A 400 MB request body that fails the test if anything reads it."""

    size = 400 * 1024 * 1024

    def __init__(self):
        self.position = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = self.size + offset if whence == io.SEEK_END else offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer):
        raise AssertionError("the body was read")


def test_a_webhook_over_max_form_bytes_is_a_413_before_it_is_read(app, client, webhook_secret):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == 1024 * 1024  # MAX_FORM_BYTES' default
    response = client.post(
        "/webhooks/stripe",
        input_stream=UnreadableBody(),
        headers={"Stripe-Signature": "t=1,v1=0", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.is_json
    payload = b'{"id": "evt_big", "type": "t", "data": {"pad": "' + b"a" * limit + b'"}}'
    response = client.post("/webhooks/stripe", data=payload, headers=signed(payload))
    assert response.status_code == 413
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
