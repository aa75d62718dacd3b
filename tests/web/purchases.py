"""Credited purchases and the rows a refund writes, for the pages about refunds and closure."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, AccountRequest, ApiKey, Hold, Purchase
from app.models.types import utcnow
from app.services.payments import apply_payment_succeeded

CREDIT = 1_000_000_000


def credited_purchase(
    app, account_id: int, cents: int, *, days_ago: float = 0, intent: str | None = None
) -> int:
    """A purchase credited the way the worker credits one, paid `days_ago` days back (by the
    PaymentIntent `intent`, or one named after it); its id."""
    with app.app_context():
        purchase = Purchase(account_id=account_id, amount_cents=cents, status="pending")
        db.session.add(purchase)
        db.session.flush()
        apply_payment_succeeded(
            {
                "id": intent or f"pi_test_{purchase.id}",
                "amount": cents,
                "currency": "usd",
                "metadata": {"account_id": str(account_id), "purchase_id": str(purchase.id)},
            }
        )
        purchase.succeeded_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()
        return purchase.id


def money_of(app, account_id: int) -> dict:
    """What a refund request would have written: requests, open holds, balance and held."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        state = {
            "requests": db.session.scalar(
                select(func.count())
                .select_from(AccountRequest)
                .where(AccountRequest.account_id == account_id)
            ),
            "open_holds": db.session.scalar(
                select(func.count())
                .select_from(Hold)
                .where(Hold.account_id == account_id, Hold.status == "open")
            ),
            "balance": account.balance_nanocredits,
            "held": account.held_nanocredits,
        }
        db.session.remove()
        return state


def only_request(app, account_id: int) -> AccountRequest:
    """The account's one request, detached."""
    with app.app_context():
        request = db.session.scalars(
            select(AccountRequest).where(AccountRequest.account_id == account_id)
        ).one()
        db.session.expunge(request)
        db.session.remove()
        return request


def set_request(app, request_id: int, **values) -> None:
    """Move a request on as an admin and the job would, without them."""
    with app.app_context():
        request = db.session.get(AccountRequest, request_id)
        for name, value in values.items():
            setattr(request, name, value)
        db.session.commit()
        db.session.remove()


def unrevoked_keys(app, account_id: int) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
        )
        db.session.remove()
        return count
