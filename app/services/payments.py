"""Stripe payments: storing webhook events once, and turning a verified success into credit."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, Purchase, StripeEvent
from app.models.types import utcnow
from app.services import ledger

NANOS_PER_CENT = 10_000_000  # $1 = 1 credit


def store_event(event: dict) -> bool:
    """Keep a verified event under its unique Stripe id; False when it was already stored."""
    if db.session.get(StripeEvent, event["id"]) is not None:
        return False
    try:
        with db.session.begin_nested():
            db.session.add(StripeEvent(id=event["id"], type=event["type"], payload=event))
    except IntegrityError:
        return False  # the same event, delivered twice at once
    return True


def _flag(purchase: Purchase | None, account_id: int | None, reason: str) -> str:
    if purchase is not None:
        purchase.status = "flagged"
        purchase.flagged_reason = reason
    if account_id is not None:
        db.session.execute(
            update(Account)
            .where(Account.id == account_id, Account.flagged_reason.is_(None))
            .values(flagged_reason=f"payment: {reason}")
        )
    db.session.flush()
    return f"flagged: {reason}"


def apply_payment_succeeded(intent: dict) -> str:
    """Credit the purchase a succeeded PaymentIntent paid for, exactly once.

    The credit's idempotency key is the PaymentIntent id, so duplicate and out-of-order deliveries
    (and the reconciliation job) credit once. A received amount or currency that does not match
    the purchase is flagged for an admin, not credited. A success after the purchase expired still
    credits. Returns what happened, for the event's record.
    """
    metadata = intent.get("metadata") or {}
    purchase = None
    if str(metadata.get("purchase_id", "")).isdigit():
        purchase = db.session.get(Purchase, int(metadata["purchase_id"]))
    if purchase is None or str(purchase.account_id) != str(metadata.get("account_id")):
        return _flag(None, None, f"unknown purchase for {intent.get('id')}")
    received = intent.get("amount_received")
    if received is None:
        received = intent.get("amount")  # the emulator omits amount_received
    if received != purchase.amount_cents or str(intent.get("currency", "")).lower() != "usd":
        return _flag(purchase, purchase.account_id, f"amount {received} {intent.get('currency')}")
    _, created = ledger.post_entry(
        account_id=purchase.account_id,
        kind="purchase",
        amount_nanocredits=purchase.amount_cents * NANOS_PER_CENT,
        idempotency_key=intent["id"],
        reference_type="payment_intent",
        reference_id=intent["id"],
    )
    purchase.status = "succeeded"
    purchase.stripe_payment_intent_id = intent["id"]
    purchase.succeeded_at = purchase.succeeded_at or utcnow()
    db.session.flush()
    return "credited" if created else "already credited"


HANDLERS = {"payment_intent.succeeded": apply_payment_succeeded}


def process_event(event_id: str) -> str | None:
    """Apply a stored event once; None when it was already processed."""
    event = db.session.scalar(
        select(StripeEvent).where(StripeEvent.id == event_id).with_for_update()
    )
    if event is None or event.processed_at is not None:
        return None
    handler = HANDLERS.get(event.type)
    outcome = handler(event.payload["data"]["object"]) if handler else "ignored"
    event.processed_at = utcnow()
    event.error = None if not outcome.startswith("flagged") else outcome
    db.session.flush()
    return outcome
