"""Buying credits with Stripe, and turning what Stripe reports into ledger movements.

The customer's card is saved through a SetupIntent; the server then creates and confirms one
PaymentIntent per attempt under the idempotency key `purchase-<id>-attempt-<n>`, stored (as the
attempt number) before the call. Credit is granted only by the worker, from a verified
`payment_intent.succeeded` (webhook or reconciliation), keyed by the PaymentIntent id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, Purchase, ReconciliationRun, StripeEvent
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services import ledger
from app.services.audit import record_audit
from app.services.money import AmountError, parse_decimal
from app.services.stripe_api import as_dict, stripe_client

NANOS_PER_CENT = 10_000_000  # $1 = 1 credit
PURCHASE_CURRENCY = "usd"
PAYMENT_METHOD_ID = re.compile(r"^pm_[A-Za-z0-9_]{1,200}$")
# Stripe's own statuses of a SetupIntent that can still take a card.
SETUP_INTENT_OPEN = ("requires_payment_method", "requires_confirmation", "requires_action")
RECONCILE_WINDOW = timedelta(hours=72)
RECONCILE_PAGE_SIZE = 100
RECONCILE_MAX_PAGES = 200
PENDING_PURCHASE_LIFETIME = timedelta(hours=24)
DISPUTE_REASON = "payment dispute"
DISPUTE_MESSAGE = "a payment dispute (chargeback) was opened on one of your purchases"
REFUND_LIVE_STATUSES = ("succeeded", "pending", "requires_action")


class PurchaseError(ValueError):
    """A purchase request that cannot be honoured; the message is for the customer."""


def cents_to_nanos(cents: int) -> int:
    return cents * NANOS_PER_CENT


def display_dollars(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def plain_dollars(cents: int) -> str:
    """Cents as an amount field shows them: 1250 -> '12.50' (no sign, no separators)."""
    return f"{cents // 100}.{cents % 100:02d}"


def parse_purchase_amount(text: str, *, min_cents: int, max_cents: int) -> int:
    """Dollars as typed ('5', '12.50', '$20') -> cents. Raises PurchaseError with a message."""
    cleaned = (text or "").strip().removeprefix("$").strip()
    if not cleaned:
        raise PurchaseError("Enter an amount in dollars, like 20 or 12.50.")
    try:
        value = parse_decimal(cleaned, max_decimals=2)
    except AmountError:
        if re.fullmatch(r"[+-]?\d*\.\d{3,}", cleaned):
            raise PurchaseError("Enter the amount in whole cents, like 12.50.") from None
        raise PurchaseError("Enter an amount in dollars, like 20 or 12.50.") from None
    cents = int(value * 100)
    if cents < min_cents:
        raise PurchaseError(f"The minimum purchase is {display_dollars(min_cents)}.")
    if cents > max_cents:
        raise PurchaseError(f"The most you can buy at once is {display_dollars(max_cents)}.")
    return cents


def _check_may_buy(account: Account) -> None:
    if not account.is_active_account:
        raise PurchaseError(f"Your account is {account.status}: it cannot buy credits.")
    from app.services.refunds import closing_request  # refunds builds on this module

    if closing_request(account.id) is not None:
        raise PurchaseError("Your account is being closed: it cannot buy credits.")


def start_purchase(account: Account, amount_cents: int) -> Purchase:
    """Record a pending purchase. Raises PurchaseError unless the account may buy."""
    _check_may_buy(account)
    purchase = Purchase(account_id=account.id, amount_cents=amount_cents, currency="usd")
    db.session.add(purchase)
    db.session.flush()
    return purchase


def ensure_customer(account: Account) -> str:
    """The account's Stripe customer, created once (the idempotency key covers a lost answer)."""
    if account.stripe_customer_id:
        return account.stripe_customer_id
    customer = stripe_client().v1.customers.create(
        params={"email": account.email, "metadata": {"account_id": str(account.id)}},
        options={"idempotency_key": f"customer-account-{account.id}"},
    )
    account.stripe_customer_id = customer.id
    db.session.flush()
    return customer.id


def setup_intent_for(purchase: Purchase) -> dict:
    """A SetupIntent that can take the card for this purchase: the stored one while it is still
    open, else a new one (a card set up by a declined attempt cannot be set up again)."""
    client = stripe_client()
    previous = purchase.stripe_setup_intent_id
    if previous:
        intent = as_dict(client.v1.setup_intents.retrieve(previous))
        if intent.get("status") in SETUP_INTENT_OPEN:
            return intent
    account = db.session.get(Account, purchase.account_id)
    intent = as_dict(
        client.v1.setup_intents.create(
            params={
                "customer": ensure_customer(account),
                "payment_method_types": ["card"],
                "usage": "off_session",
                "metadata": _metadata(purchase),
            },
            # Derived from the intent it replaces, so a retried request gets the same one back.
            options={"idempotency_key": f"purchase-{purchase.id}-setup-after-{previous or 'none'}"},
        )
    )
    purchase.stripe_setup_intent_id = intent["id"]
    db.session.flush()
    return intent


def _metadata(purchase: Purchase) -> dict[str, str]:
    return {"account_id": str(purchase.account_id), "purchase_id": str(purchase.id)}


def begin_attempt(purchase: Purchase, payment_method_id: str) -> int:
    """Number the payment attempt about to be made; commit it before the Stripe call it keys.

    The number moves on only once the previous attempt is known to have failed: a form posted twice,
    or posted again while an attempt's outcome is unknown, reuses the attempt's idempotency key, so
    Stripe answers with the same PaymentIntent instead of charging twice. Raises PurchaseError for a
    malformed card reference or a purchase that can no longer be paid.
    """
    if not PAYMENT_METHOD_ID.fullmatch(payment_method_id or ""):
        raise PurchaseError("The card details did not reach us. Enter the card again.")
    _check_may_buy(db.session.get(Account, purchase.account_id))
    db.session.refresh(purchase, with_for_update=True)
    if not purchase.is_retryable:
        raise PurchaseError(f"This purchase is {purchase.status}; it cannot be paid again.")
    if purchase.status == "failed" or purchase.attempts == 0:
        purchase.attempts += 1
        purchase.status = "pending"
        purchase.failure_message = None
    db.session.flush()
    return purchase.attempts


@dataclass(frozen=True)
class PaymentOutcome:
    """Where a payment attempt stands: `processing` (Stripe took it; the worker credits it),
    `requires_action` (3-D Secure, completed in the page with `client_secret`) or `failed`."""

    state: str
    message: str | None = None
    client_secret: str | None = None


def pay_with(purchase: Purchase, payment_method_id: str) -> PaymentOutcome:
    """Create and confirm the PaymentIntent of the purchase's current attempt."""
    account = db.session.get(Account, purchase.account_id)
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": purchase.amount_cents,
                "currency": PURCHASE_CURRENCY,
                "customer": ensure_customer(account),
                "payment_method": payment_method_id,
                "payment_method_types": ["card"],
                "confirm": True,
                "metadata": _metadata(purchase),
            },
            options={"idempotency_key": f"purchase-{purchase.id}-attempt-{purchase.attempts}"},
        )
    except stripe.CardError as exc:
        error = exc.error
        intent_id = _id_of(getattr(error, "payment_intent", None)) if error else None
        message = exc.user_message or (error.message if error else None)
        return _attempt_failed(purchase, message, intent_id)
    return apply_intent_status(purchase, as_dict(intent))


def attempt_in_flight(purchase: Purchase) -> bool:
    """Whether an attempt's PaymentIntent exists and its outcome is not known here yet."""
    return purchase.status == "pending" and bool(purchase.stripe_payment_intent_id)


def refresh_payment(purchase: Purchase) -> PaymentOutcome:
    """Ask Stripe where the current attempt stands (after 3-D Secure, or on a reload)."""
    if not purchase.stripe_payment_intent_id:
        return PaymentOutcome("failed", purchase.failure_message)
    intent = stripe_client().v1.payment_intents.retrieve(purchase.stripe_payment_intent_id)
    return apply_intent_status(purchase, as_dict(intent))


def apply_intent_status(purchase: Purchase, intent: dict) -> PaymentOutcome:
    """Record the attempt's PaymentIntent and say what the page shows next."""
    status = intent.get("status")
    if purchase.status in ("pending", "failed"):
        purchase.stripe_payment_intent_id = intent["id"]
    if status in ("succeeded", "processing"):
        db.session.flush()
        return PaymentOutcome("processing")
    if status == "requires_action":
        db.session.flush()
        return PaymentOutcome("requires_action", client_secret=intent.get("client_secret"))
    error = intent.get("last_payment_error") or {}
    return _attempt_failed(purchase, error.get("message"), intent["id"])


def _attempt_failed(purchase: Purchase, message: str | None, intent_id: str | None):
    message = message or "The payment did not go through."
    if purchase.is_retryable:
        purchase.status = "failed"
        purchase.failure_message = message
        if intent_id:
            purchase.stripe_payment_intent_id = intent_id
    db.session.flush()
    return PaymentOutcome("failed", message)


def _id_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.get("id") if isinstance(value, dict) else getattr(value, "id", None)


# Webhook events and what the worker does with them.


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
        _flag_account(account_id, f"payment: {reason}")
    db.session.flush()
    return f"flagged: {reason}"


def _flag_account(account_id: int, reason: str) -> None:
    db.session.execute(
        update(Account)
        .where(Account.id == account_id, Account.flagged_reason.is_(None))
        .values(flagged_reason=reason)
    )


def _purchase_named_by(intent: dict) -> Purchase | None:
    """The purchase a PaymentIntent's metadata names, if its account matches too."""
    metadata = intent.get("metadata") or {}
    purchase_id = str(metadata.get("purchase_id", ""))
    if not purchase_id.isdigit():
        return None
    purchase = db.session.get(Purchase, int(purchase_id), with_for_update=True)
    if purchase is None or str(purchase.account_id) != str(metadata.get("account_id")):
        return None
    return purchase


def apply_payment_succeeded(intent: dict) -> str:
    """Credit the purchase a succeeded PaymentIntent paid for, exactly once.

    The credit's idempotency key is the PaymentIntent id, so duplicate and out-of-order deliveries
    (and the reconciliation job) credit once. A received amount or currency that does not match
    the purchase is flagged for an admin, not credited. A success after the purchase expired still
    credits. Returns what happened, for the event's record.
    """
    purchase = _purchase_named_by(intent)
    if purchase is None:
        return _flag(None, None, f"unknown purchase for {intent.get('id')}")
    if purchase.status == "flagged":
        return f"flagged: already, {purchase.flagged_reason}"
    received = intent.get("amount_received")
    if received is None:
        received = intent.get("amount")  # the emulator omits amount_received
    if received != purchase.amount_cents or str(intent.get("currency", "")).lower() != "usd":
        return _flag(purchase, purchase.account_id, f"amount {received} {intent.get('currency')}")
    _, created = ledger.post_entry(
        account_id=purchase.account_id,
        kind="purchase",
        amount_nanocredits=cents_to_nanos(purchase.amount_cents),
        idempotency_key=intent["id"],
        reference_type="payment_intent",
        reference_id=intent["id"],
    )
    purchase.status = "succeeded"
    purchase.stripe_payment_intent_id = intent["id"]
    purchase.stripe_charge_id = purchase.stripe_charge_id or _charge_of(intent)
    purchase.failure_message = None
    purchase.succeeded_at = purchase.succeeded_at or utcnow()
    db.session.flush()
    if created and db.session.get(Account, purchase.account_id).is_ended:
        # Paid for before the account ended: the credit is the customer's, to be refunded.
        _flag_account(purchase.account_id, "payment: credited after the account ended; refund it")
    return "credited" if created else "already credited"


def _charge_of(intent: dict) -> str | None:
    """The charge that paid a PaymentIntent (`latest_charge`; `charges` on older API versions)."""
    charge = _id_of(intent.get("latest_charge"))
    if charge is None:
        listed = (intent.get("charges") or {}).get("data") or []
        charge = _id_of(listed[-1]) if listed else None
    return charge


def apply_payment_failed(intent: dict) -> str:
    """Mark the attempt failed; the purchase stays payable. Only the failure of the purchase's
    current PaymentIntent counts: an earlier attempt's, or one of a paid purchase, changes nothing
    (a declined attempt the page already reported has no stored id to match)."""
    purchase = _purchase_named_by(intent)
    if purchase is None:
        return "ignored: unknown purchase"
    if purchase.status != "pending" or purchase.stripe_payment_intent_id != intent["id"]:
        return "ignored: superseded"
    error = intent.get("last_payment_error") or {}
    default = "The payment was canceled." if intent.get("status") == "canceled" else None
    _attempt_failed(purchase, error.get("message") or default, intent["id"])
    return "attempt failed"


def _purchase_paid_by(payment_intent_id: str | None) -> Purchase | None:
    if not payment_intent_id:
        return None
    return db.session.scalar(
        select(Purchase)
        .where(Purchase.stripe_payment_intent_id == payment_intent_id)
        .with_for_update()
    )


def record_refund(purchase: Purchase, refund_id: str, amount_cents: int) -> bool:
    """Debit one refund of a purchase, once, under `refund:<refund id>` (OneKey's own refunds use
    the same key). The debit may take the balance below zero; the account is then flagged."""
    _, created = ledger.post_entry(
        account_id=purchase.account_id,
        kind="refund",
        amount_nanocredits=-cents_to_nanos(amount_cents),
        idempotency_key=f"refund:{refund_id}",
        reference_type="refund",
        reference_id=refund_id,
    )
    if created:
        purchase.refunded_cents += amount_cents
        ledger.flag_if_negative(purchase.account_id)
        db.session.flush()
    return created


def apply_charge_refunded(charge: dict) -> str:
    """Debit each refund of the charge once, whoever reports it first."""
    purchase = _purchase_paid_by(_id_of(charge.get("payment_intent")))
    if purchase is None:
        return _flag(None, None, f"refund of unknown charge {charge.get('id')}")
    purchase.stripe_charge_id = purchase.stripe_charge_id or charge.get("id")
    refunds = charge.get("refunds") or {}
    listed = refunds.get("data") if isinstance(refunds, dict) else None
    if listed is None or refunds.get("has_more"):
        # Recent API versions leave the refunds out of the charge: ask for them.
        page = stripe_client().v1.refunds.list(params={"charge": charge["id"], "limit": 100})
        listed = [as_dict(refund) for refund in page.auto_paging_iter()]
    debited = sum(
        record_refund(purchase, refund["id"], int(refund["amount"]))
        for refund in listed
        if refund.get("status") in REFUND_LIVE_STATUSES
    )
    return f"{debited} refund(s) debited"


def _purchase_disputed_by(dispute: dict) -> Purchase | None:
    intent_id = _id_of(dispute.get("payment_intent"))
    if not intent_id and dispute.get("charge"):
        charge = stripe_client().v1.charges.retrieve(_id_of(dispute["charge"]))
        intent_id = _id_of(as_dict(charge).get("payment_intent"))
    return _purchase_paid_by(intent_id)


def _post_dispute_movement(purchase: Purchase, dispute: dict, *, won: bool) -> bool:
    """Debit the disputed amount (or, once won, give it back) under the dispute's own key."""
    amount = int(dispute.get("amount") or 0)
    _, created = ledger.post_entry(
        account_id=purchase.account_id,
        kind="dispute",
        amount_nanocredits=cents_to_nanos(amount) if won else -cents_to_nanos(amount),
        idempotency_key=f"dispute:{dispute['id']}:won" if won else f"dispute:{dispute['id']}",
        reference_type="dispute",
        reference_id=dispute["id"],
    )
    if created:
        purchase.disputed_cents = max(purchase.disputed_cents + (-amount if won else amount), 0)
        ledger.flag_if_negative(purchase.account_id)
        db.session.flush()
    return created


def apply_dispute_created(dispute: dict) -> str:
    """A chargeback: suspend the account (audited) and debit the disputed amount, once."""
    purchase = _purchase_disputed_by(dispute)
    if purchase is None:
        return _flag(None, None, f"dispute {dispute.get('id')} of an unknown charge")
    created = _post_dispute_movement(purchase, dispute, won=False)
    account = db.session.get(Account, purchase.account_id, with_for_update=True)
    if account.is_active_account:
        account_service.suspend(
            account, reason=DISPUTE_REASON, actor_id=None, customer_message=DISPUTE_MESSAGE
        )
        # Told by email once the job has committed.
        db.session.info.setdefault("suspended_account_ids", []).append(account.id)
    return "account suspended, amount debited" if created else "already applied"


def apply_dispute_closed(dispute: dict) -> str:
    """A dispute won gives the debited amount back, once; a lost one changes nothing more.
    The account stays suspended until an admin lifts it."""
    if dispute.get("status") != "won":
        return f"dispute {dispute.get('status')}"
    purchase = _purchase_disputed_by(dispute)
    if purchase is None:
        return _flag(None, None, f"dispute {dispute.get('id')} of an unknown charge")
    created = _post_dispute_movement(purchase, dispute, won=True)
    return "amount credited back" if created else "already applied"


HANDLERS = {
    "payment_intent.succeeded": apply_payment_succeeded,
    "payment_intent.payment_failed": apply_payment_failed,
    "payment_intent.canceled": apply_payment_failed,
    "charge.refunded": apply_charge_refunded,
    "charge.dispute.created": apply_dispute_created,
    "charge.dispute.closed": apply_dispute_closed,
}


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
    event.error = outcome if outcome.startswith("flagged") else None
    db.session.flush()
    return outcome


def requeue_event(event: StripeEvent, *, actor_id: int) -> None:
    """An admin sends an event that failed or never ran through its handler again (audited; the
    caller queues it after the commit). The handlers move money once per ledger key, so running
    one again is safe."""
    previous_error = event.error
    event.processed_at = None
    event.error = None
    record_audit(
        actor_id=actor_id,
        action="stripe_event.retry",
        target_account_id=None,
        details={"event": event.id, "error": previous_error},
    )


# Reconciliation: what the webhooks missed.


def request_reconciliation(*, actor_id: int) -> None:
    """Record that an admin asked for a reconciliation run (the caller queues it after the
    commit)."""
    record_audit(actor_id=actor_id, action="reconciliation.run", target_account_id=None)


def reconcile_payments(*, actor_id: int | None = None, now: datetime | None = None):
    """Apply every PaymentIntent success of the last 72 hours that no webhook delivered, then
    expire purchases left unpaid for 24 hours. Returns the run's record; a Stripe failure is
    recorded in it (and nothing is expired, since successes could not be checked)."""
    now = now or utcnow()
    run = ReconciliationRun(actor_id=actor_id, started_at=now, findings=[])
    db.session.add(run)
    db.session.flush()
    try:
        for intent in _recent_intents(since=now - RECONCILE_WINDOW):
            run.intents_examined += 1
            metadata = intent.get("metadata") or {}
            if intent.get("status") != "succeeded" or "purchase_id" not in metadata:
                continue  # not paid, or not one of OneKey's purchases
            outcome = apply_payment_succeeded(intent)
            if outcome == "already credited" or outcome.startswith("flagged: already"):
                continue
            if outcome == "credited":
                run.credited += 1
            else:
                run.flagged += 1
            run.findings = [
                *run.findings,
                {
                    "payment_intent": intent["id"],
                    "purchase": metadata["purchase_id"],
                    "outcome": outcome,
                },
            ]
    except stripe.StripeError as exc:
        run.error = f"{type(exc).__name__}: {exc.user_message or exc}"[:500]
    else:
        run.expired = expire_stale_purchases(now)
    run.finished_at = utcnow()
    db.session.flush()
    return run


def _recent_intents(*, since: datetime):
    """PaymentIntents newest first, paged with `starting_after`, up to the first older one (the
    emulator has no `created` filter)."""
    client = stripe_client()
    params: dict[str, Any] = {"limit": RECONCILE_PAGE_SIZE}
    for _ in range(RECONCILE_MAX_PAGES):
        page = client.v1.payment_intents.list(params=params)
        intents = [as_dict(intent) for intent in page.data]
        for intent in intents:
            if int(intent.get("created") or 0) < since.timestamp():
                return
            yield intent
        if not page.has_more or not intents:
            return
        params = {"limit": RECONCILE_PAGE_SIZE, "starting_after": intents[-1]["id"]}


def expire_stale_purchases(now: datetime | None = None) -> int:
    """Unpaid purchases older than 24 hours become expired; a late success still credits them."""
    now = now or utcnow()
    return db.session.execute(
        update(Purchase)
        .where(
            Purchase.status.in_(("pending", "failed")),
            Purchase.created_at < now - PENDING_PURCHASE_LIFETIME,
        )
        .values(status="expired")
        .execution_options(synchronize_session=False)
    ).rowcount
