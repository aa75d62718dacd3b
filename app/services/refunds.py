"""What of each purchase can be refunded (Terms §4: unused credits, within 30 days of purchase).

Unused credit is balance − held. Credit sources (purchases and grants) are consumed oldest first, so
the unused credit belongs to the newest sources. A purchase of the last 30 days is refundable up to
min(its unconsumed part, paid − already refunded), floored to the cent. Grants are never paid out,
and a purchase under an open (or lost) dispute is not refundable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Account, LedgerEntry, Purchase
from app.models.types import utcnow
from app.services.payments import NANOS_PER_CENT, cents_to_nanos

REFUND_WINDOW = timedelta(days=30)


def refundable_cents_by_purchase(account_id: int, now: datetime | None = None) -> dict[int, int]:
    """Cents refundable now for each of the account's purchases that has any."""
    now = now or utcnow()
    account = db.session.get(Account, account_id)
    unused = max(account.balance_nanocredits - account.held_nanocredits, 0)
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
        if paid_at < now - REFUND_WINDOW:
            continue
        payable = min(unconsumed, cents_to_nanos(purchase.amount_cents - purchase.refunded_cents))
        if payable >= NANOS_PER_CENT:
            refundable[purchase.id] = payable // NANOS_PER_CENT
    return refundable
