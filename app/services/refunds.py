"""Refunds of unused credit (Terms §4): what is refundable, the request, its decision, and the
refunds the `lifecycle` job makes with Stripe.

Unused credit is balance − held. Credit sources (purchases and grants) are consumed oldest first, so
the unused credit belongs to the newest sources. A purchase of the last 30 days is refundable up to
min(its unconsumed part, paid − already refunded), floored to the cent. Grants are never paid out,
and a purchase under an open (or lost) dispute is not refundable.

A request reserves its amount at once (a hold that never expires by itself), so credit on its way
back to the card cannot be spent. The job splits the amount over the purchases it comes from,
newest first, and makes one Stripe refund per purchase, each stored as a pending `RefundPart`
before Stripe is called; each refund debits the ledger under `refund:<stripe refund id>`, the key
the `charge.refunded` webhook uses too, so a refund is debited once whoever reports it first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, AccountRequest, Hold, LedgerEntry, Purchase, RefundPart
from app.models.lifecycle import OPEN_STATES
from app.models.types import utcnow
from app.services import ledger
from app.services.audit import clean_reason, record_audit
from app.services.money import AmountError, parse_decimal
from app.services.payments import NANOS_PER_CENT, cents_to_nanos, display_dollars, record_refund
from app.services.stripe_api import as_dict, stripe_client

REFUND_WINDOW = timedelta(days=30)
NOTE_MAX = 1000
# How long one run of the job may own a request; a run that died lets go when this passes.
LEASE = timedelta(minutes=15)
# Stripe errors that prove nothing was refunded; after any other the refund may exist.
DEFINITE_STRIPE_ERRORS = (
    stripe.InvalidRequestError,
    stripe.CardError,
    stripe.AuthenticationError,
    stripe.PermissionError,
    stripe.IdempotencyError,
)


class RefundError(ValueError):
    """A refund request or decision that cannot be honoured; the message says why."""


def refundable_cents_by_purchase(
    account_id: int,
    now: datetime | None = None,
    *,
    window: timedelta | None = REFUND_WINDOW,
    reserved_nanocredits: int = 0,
) -> dict[int, int]:
    """Cents refundable now for each of the account's purchases that has any.

    `window` None counts every purchase, however old (a termination's discretionary refund).
    `reserved_nanocredits` is added back to the unused credit: a refund's own reservation is
    credit that refund may pay out.
    """
    now = now or utcnow()
    account = db.session.get(Account, account_id)
    unused = max(account.balance_nanocredits - account.held_nanocredits + reserved_nanocredits, 0)
    purchases = {
        purchase.stripe_payment_intent_id: purchase
        for purchase in db.session.scalars(
            select(Purchase).where(
                Purchase.account_id == account_id, Purchase.status == "succeeded"
            )
        )
    }
    sources = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.reference_id, LedgerEntry.amount_nanocredits)
        .where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.kind.in_(("purchase", "grant")),
            LedgerEntry.amount_nanocredits > 0,
        )
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    ).all()
    refundable: dict[int, int] = {}
    for kind, reference_id, amount in sources:
        if unused <= 0:
            break
        purchase = purchases.get(reference_id) if kind == "purchase" else None
        remaining = amount
        if purchase is not None:
            remaining -= cents_to_nanos(purchase.refunded_cents + purchase.disputed_cents)
        unconsumed = min(unused, max(remaining, 0))
        unused -= unconsumed
        if purchase is None or purchase.disputed_cents:
            continue
        paid_at = purchase.succeeded_at or purchase.created_at
        if window is not None and paid_at < now - window:
            continue
        payable = min(unconsumed, cents_to_nanos(purchase.amount_cents - purchase.refunded_cents))
        if payable >= NANOS_PER_CENT:
            refundable[purchase.id] = payable // NANOS_PER_CENT
    return refundable


def window_of(kind: str) -> timedelta | None:
    """A termination's refund is at OneKey's discretion (§10), so no 30-day limit applies to it."""
    return None if kind == "termination" else REFUND_WINDOW


def open_request(account_id: int) -> AccountRequest | None:
    """The account's request still in progress, if any (there is at most one)."""
    return db.session.scalar(
        select(AccountRequest).where(
            AccountRequest.account_id == account_id, AccountRequest.state.in_(OPEN_STATES)
        )
    )


def closing_request(account_id: int) -> AccountRequest | None:
    """The account's open closure or termination: while there is one, it cannot make keys or buy."""
    request = open_request(account_id)
    return request if request is not None and request.kind != "refund" else None


def clean_note(note: str | None) -> str | None:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise RefundError(f"The note can be at most {NOTE_MAX} characters.")
    return note or None


def parse_refund_cents(text: str | None) -> int:
    """Dollars as typed ('5', '12.50', '$20') -> whole cents; empty is 0. Raises RefundError."""
    cleaned = (text or "").strip().removeprefix("$").strip()
    if not cleaned:
        return 0
    try:
        value = parse_decimal(cleaned, max_decimals=2)
    except AmountError:
        raise RefundError("Enter an amount in dollars and whole cents, like 12.50.") from None
    if value < 0:
        raise RefundError("Enter an amount of at least $0.01.")
    return int(value * 100)


def check_refund_amount(
    account_id: int, amount_cents: int, *, purchase_id: int | None, window: timedelta | None
) -> None:
    """Raises RefundError unless the amount is positive and refundable now (from one purchase
    when `purchase_id` is given)."""
    if amount_cents <= 0:
        raise RefundError("Enter an amount of at least $0.01.")
    refundable = refundable_cents_by_purchase(account_id, window=window)
    if purchase_id is not None:
        available = refundable.get(purchase_id, 0)
        where = "of this purchase"
    else:
        available = sum(refundable.values())
        where = "in all"
    if available == 0:
        raise RefundError(f"Nothing {'of this purchase ' if purchase_id else ''}is refundable now.")
    if amount_cents > available:
        raise RefundError(f"At most {display_dollars(available)} is refundable now {where}.")


def open_new_request(
    account: Account,
    *,
    kind: str,
    refund_cents: int,
    actor_id: int | None,
    purchase_id: int | None = None,
    note: str | None = None,
) -> AccountRequest:
    """Record a request and reserve its refund at once. Raises RefundError when another request
    is open or the refund is not available (nothing is written then)."""
    if open_request(account.id) is not None:
        raise RefundError("A request of this account is already in progress.")
    if refund_cents:
        check_refund_amount(
            account.id, refund_cents, purchase_id=purchase_id, window=window_of(kind)
        )
    request = AccountRequest(
        account_id=account.id,
        kind=kind,
        state="requested",
        purchase_id=purchase_id,
        requested_cents=refund_cents,
        note=note,
        requested_by=actor_id,
    )
    if refund_cents:
        try:
            request.hold_id = ledger.reserve_for_refund(account.id, cents_to_nanos(refund_cents)).id
        except ledger.InsufficientCredit:
            raise RefundError("That credit is no longer unused.") from None
    try:
        with db.session.begin_nested():
            db.session.add(request)
    except IntegrityError:
        # Another request of this account was made at the same moment (one open at a time); the
        # caller rolls back, reservation included.
        raise RefundError("A request of this account is already in progress.") from None
    return request


def request_refund(
    account: Account,
    *,
    amount_cents: int,
    purchase_id: int | None = None,
    note: str | None = None,
    actor_id: int | None = None,
) -> AccountRequest:
    """A customer's request for a refund of unused credit (one purchase's, or of all).

    Raises RefundError when the account has ended, another request is open, or the amount is
    not refundable now; nothing is reserved or written then.
    """
    if account.is_ended:
        raise RefundError(f"The account is {account.status}.")
    if amount_cents <= 0:
        raise RefundError("Enter an amount of at least $0.01.")
    if purchase_id is not None:
        purchase = db.session.get(Purchase, purchase_id)
        if purchase is None or purchase.account_id != account.id:
            raise RefundError("There is no such purchase.")
    request = open_new_request(
        account,
        kind="refund",
        refund_cents=amount_cents,
        actor_id=actor_id if actor_id is not None else account.id,
        purchase_id=purchase_id,
        note=clean_note(note),
    )
    record_audit(
        actor_id=actor_id if actor_id is not None else account.id,
        action="refund.request",
        target_account_id=account.id,
        details={"request": request.id, "cents": amount_cents, "purchase": purchase_id},
    )
    return request


def _lock(request: AccountRequest) -> None:
    """Re-read the request under a row lock: a job takes an approved request under the same one,
    so a decision and a run never act on one request at once."""
    db.session.flush()  # what the caller set on it stays
    db.session.refresh(request, with_for_update=True)


def _decidable(request: AccountRequest, *states: str) -> None:
    if request.state not in ("requested", "failed", *states):
        raise RefundError(f"This request is {request.state}; it cannot be decided now.")


def approve(
    request: AccountRequest, *, amount_cents: int | None, reason: str, actor_id: int
) -> None:
    """Approve a request, for the amount asked or less (a failed one: approve it again, to retry).

    Less than asked gives the rest of the reservation back at once. Raises RefundError (or
    AccountError for a missing reason) when the request cannot be approved so.
    """
    reason = clean_reason(reason)
    _lock(request)
    _decidable(request)
    retry = request.state == "failed"
    if retry:
        other = open_request(request.account_id)
        if other is not None:
            # One open request per account: this one waits until the other is over.
            raise RefundError(
                f"Request #{other.id} of this account is in progress; retry this one when it "
                "is done."
            )
    amount = request.requested_cents if amount_cents is None else amount_cents
    if amount < 0 or amount > request.requested_cents:
        raise RefundError(
            f"Approve at most the {display_dollars(request.requested_cents)} asked for."
        )
    if request.kind == "refund" and amount == 0:
        raise RefundError("Approve at least $0.01, or deny the request.")
    if amount < request.refunded_cents:
        raise RefundError(f"{display_dollars(request.refunded_cents)} is refunded already.")
    to_reserve = cents_to_nanos(amount - request.refunded_cents)
    if retry:
        request.hold_id = None
        if to_reserve:
            try:
                request.hold_id = ledger.reserve_for_refund(request.account_id, to_reserve).id
            except ledger.InsufficientCredit:
                raise RefundError(
                    "That credit is no longer unused: it cannot be reserved."
                ) from None
    elif request.hold_id is not None:
        if to_reserve:
            ledger.shrink_reservation(request.hold_id, to_reserve)
        else:
            ledger.release_hold(request.hold_id)
            request.hold_id = None
    request.approved_cents = amount
    request.state = "approved"
    request.error = None
    request.decided_by = actor_id
    request.decided_at = utcnow()
    request.decision_reason = reason
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action=f"{request.kind}.{'retry' if retry else 'approve'}",
        target_account_id=request.account_id,
        reason=reason,
        details={"request": request.id, "cents": amount},
    )


def deny(
    request: AccountRequest, *, reason: str, actor_id: int | None, customer_message: str | None
) -> None:
    """Deny a request, give up on a failed one, or withdraw an approval no job has started on:
    its reservation is released. Raises RefundError when it is no longer open to a decision."""
    reason = clean_reason(reason)
    _lock(request)
    _decidable(request, "approved")
    release_reservation(request)
    request.state = "denied"
    request.decided_by = actor_id
    request.decided_at = utcnow()
    request.decision_reason = reason
    request.customer_message = clean_note(customer_message)
    request.finished_at = utcnow()
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action=f"{request.kind}.deny",
        target_account_id=request.account_id,
        reason=reason,
        details={"request": request.id},
    )


def release_reservation(request: AccountRequest) -> None:
    """Give back what the request still reserves."""
    if request.hold_id is not None:
        ledger.release_hold(request.hold_id)


def start_admin_refund(
    account: Account, *, amount_cents: int, reason: str, actor_id: int
) -> AccountRequest:
    """An admin refunds unused credit directly: the customer's path, approved at once."""
    reason = clean_reason(reason)
    request = request_refund(account, amount_cents=amount_cents, actor_id=actor_id)
    approve(request, amount_cents=amount_cents, reason=reason, actor_id=actor_id)
    return request


# The job's steps: the task commits between them.


def begin_run(request_id: int, now: datetime | None = None) -> AccountRequest | None:
    """Take the lease on an approved (or interrupted) request for one run of the job; None when
    there is nothing to do or another run holds it."""
    now = now or utcnow()
    request = db.session.get(AccountRequest, request_id, with_for_update=True)
    if request is None or request.state not in ("approved", "processing"):
        return None
    if request.lease_until is not None and request.lease_until > now:
        return None
    request.state = "processing"
    request.runs += 1
    request.lease_until = now + LEASE
    db.session.flush()
    return request


def end_run(request: AccountRequest) -> None:
    request.lease_until = None
    db.session.flush()


def next_part(request: AccountRequest) -> RefundPart | None:
    """The refund part to make next (one whose outcome is unknown first), stored pending; None
    when the approved amount is refunded. Raises RefundError when the rest is not refundable any
    more (its purchases are past 30 days, or disputed)."""
    pending = next((part for part in request.parts if part.state == "pending"), None)
    if pending is not None:
        return pending
    remaining = request.amount_cents - request.refunded_cents
    if remaining <= 0:
        return None
    hold = db.session.get(Hold, request.hold_id) if request.hold_id else None
    reserved = hold.amount_nanocredits if hold is not None and hold.status == "open" else 0
    refundable = refundable_cents_by_purchase(
        request.account_id, window=window_of(request.kind), reserved_nanocredits=reserved
    )
    refunded_from = {part.purchase_id for part in request.parts if part.state == "done"}
    candidates = [
        purchase_id
        for purchase_id in refundable
        if purchase_id not in refunded_from
        and (request.purchase_id is None or purchase_id == request.purchase_id)
    ]
    if not candidates:
        raise RefundError(
            f"{display_dollars(remaining)} of the approved amount is not refundable any more "
            "(its purchases are older than 30 days, disputed, or the credit was spent)."
        )
    # Newest first: the map is in the order the unused credit was assigned.
    purchase_id = candidates[0]
    attempts = sum(1 for part in request.parts if part.purchase_id == purchase_id)
    part = RefundPart(
        request_id=request.id,
        purchase_id=purchase_id,
        attempt=attempts + 1,
        amount_cents=min(remaining, refundable[purchase_id]),
    )
    db.session.add(part)
    request.parts.append(part)
    db.session.flush()
    return part


def may_make(part: RefundPart) -> bool:
    """Whether the part still fits what is approved: a part left pending by a failed run, then
    approved again for less, is only looked up, never made."""
    request = part.request
    return part.amount_cents <= request.amount_cents - request.refunded_cents


def issue_part(part: RefundPart) -> dict | None:
    """The Stripe refund of a part: the one an earlier run made, if Stripe has it, else a new one
    (None, and nothing made, when the part no longer fits the approval: see `may_make`).

    Raises stripe.StripeError.
    """
    client = stripe_client()
    intent_id = part.purchase.stripe_payment_intent_id
    page = client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100})
    for refund in page.auto_paging_iter():
        metadata = as_dict(refund).get("metadata") or {}
        if metadata.get("refund_part") == str(part.id):
            return as_dict(refund)
    if not may_make(part):
        return None
    refund = client.v1.refunds.create(
        params={
            "payment_intent": intent_id,
            "amount": part.amount_cents,
            "metadata": {
                "account_id": str(part.request.account_id),
                "refund_request": str(part.request_id),
                "purchase_id": str(part.purchase_id),
                "refund_part": str(part.id),
            },
        },
        options={"idempotency_key": part.idempotency_key},
    )
    return as_dict(refund)


def record_part(part: RefundPart, refund: dict) -> None:
    """A part Stripe refunded: debit it (once, whoever reports it first) and take it out of the
    request's reservation."""
    request = part.request
    amount = int(refund["amount"])
    purchase = db.session.get(Purchase, part.purchase_id, with_for_update=True)
    record_refund(purchase, refund["id"], amount)
    part.amount_cents = amount
    part.stripe_refund_id = refund["id"]
    part.state = "done"
    part.error = None
    part.finished_at = utcnow()
    request.refunded_cents += amount
    hold = db.session.get(Hold, request.hold_id) if request.hold_id is not None else None
    if hold is not None and hold.status == "open":
        # A refund found after an approval of less than it may exceed what is still reserved.
        ledger.take_from_reservation(hold.id, min(cents_to_nanos(amount), hold.amount_nanocredits))
    db.session.flush()


def drop_part(part: RefundPart) -> None:
    """A pending part Stripe never made, and that no longer fits the approval: it is not made."""
    part.state = "failed"
    part.error = "not made: the request was approved again for less"
    part.finished_at = utcnow()
    db.session.flush()


def fail(request: AccountRequest, message: str, *, part: RefundPart | None, definite: bool) -> None:
    """Stripe refused (or could not be reached): the request fails with its message and what was
    not refunded is released. A part Stripe surely refused is failed; one whose outcome is unknown
    stays pending, to be looked up when an admin retries."""
    if part is not None and definite:
        part.state = "failed"
        part.error = message[:500]
        part.finished_at = utcnow()
    release_reservation(request)
    request.state = "failed"
    request.error = message[:500]
    request.lease_until = None
    request.waiting_for = None
    db.session.flush()
    record_audit(
        actor_id=None,
        action=f"{request.kind}.fail",
        target_account_id=request.account_id,
        reason=message[:500],
        details={"request": request.id, "refunded_cents": request.refunded_cents},
    )


def finish(request: AccountRequest) -> None:
    """All of the approved amount is refunded: the request is done."""
    release_reservation(request)
    request.state = "done"
    request.error = None
    request.lease_until = None
    request.waiting_for = None
    request.finished_at = utcnow()
    db.session.flush()


def stripe_message(error: stripe.StripeError) -> str:
    return f"Stripe: {error.user_message or str(error) or type(error).__name__}"
