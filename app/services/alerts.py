"""The low-balance email: the customer sets a threshold in credits; the worker emails them once each
time their balance falls below it, and re-arms the alert once the balance is back at or above it.

The state is one column: `low_balance_alert_sent_at` is None while the alert is armed. The check
claims an alert with a conditional UPDATE (armed, threshold set, balance below it), so of two
workers running the check at once only one claims each crossing, and only the claimer sends. The
settlement statement is never touched: the check reads the accounts that set a threshold (a partial
index) once a minute.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.money import AmountError, credits_to_nanos, display_credits

MAX_THRESHOLD_NANOCREDITS = credits_to_nanos("1000000")


class ThresholdError(ValueError):
    """A threshold that is not a positive amount of credits the alert can use."""


def parse_threshold(text: str | None) -> int:
    """A threshold as the customer typed it (credits, like 5 or 12.50) -> nanocredits.

    Raises ThresholdError for anything but a plain positive decimal of at most 1,000,000 credits.
    """
    try:
        threshold = credits_to_nanos((text or "").strip())
    except AmountError:
        raise ThresholdError("Enter the threshold in credits, like 5 or 12.50.") from None
    if threshold <= 0:
        raise ThresholdError("Enter a threshold above zero, or turn the alert off.")
    if threshold > MAX_THRESHOLD_NANOCREDITS:
        raise ThresholdError(f"Enter at most {display_credits(MAX_THRESHOLD_NANOCREDITS)} credits.")
    return threshold


def set_threshold(account_id: int, threshold_nanocredits: int | None) -> None:
    """Set the account's threshold, or turn the alert off with None. A changed threshold re-arms
    the alert: if the balance is already below the new one, the next check sends an email."""
    if threshold_nanocredits is not None and not (
        0 < threshold_nanocredits <= MAX_THRESHOLD_NANOCREDITS
    ):
        raise ThresholdError("The threshold is out of range.")
    db.session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.low_balance_threshold_nanocredits.is_distinct_from(threshold_nanocredits),
        )
        .values(
            low_balance_threshold_nanocredits=threshold_nanocredits,
            low_balance_alert_sent_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()


def rearm_recovered() -> int:
    """Re-arm every sent alert whose account's balance is at or above its threshold again;
    returns how many."""
    return db.session.execute(
        update(Account)
        .where(
            Account.low_balance_threshold_nanocredits.is_not(None),
            Account.low_balance_alert_sent_at.is_not(None),
            Account.balance_nanocredits >= Account.low_balance_threshold_nanocredits,
        )
        .values(low_balance_alert_sent_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def claim_due(now: datetime | None = None) -> list[int]:
    """Mark the armed alerts of active accounts whose balance is below their threshold as sent;
    returns the ids of the accounts claimed here, whom the caller emails after committing.

    One conditional UPDATE: a concurrent check waits on the rows this one claimed and then finds
    them no longer armed (PostgreSQL re-reads a row it waited for; SQLite runs one writer at a
    time), so each crossing is claimed once.
    """
    return list(
        db.session.scalars(
            update(Account)
            .where(
                Account.low_balance_threshold_nanocredits.is_not(None),
                Account.low_balance_alert_sent_at.is_(None),
                Account.balance_nanocredits < Account.low_balance_threshold_nanocredits,
                Account.status == "active",
            )
            .values(low_balance_alert_sent_at=now or utcnow())
            .returning(Account.id)
            .execution_options(synchronize_session=False)
        )
    )


def alert_still_due(account_id: int) -> Account | None:
    """The account to email about its claimed alert, or None when there is nothing to send any
    more (the account ended, turned the alert off, or the balance recovered and re-armed it)."""
    account = db.session.scalar(select(Account).where(Account.id == account_id))
    if (
        account is None
        or account.is_ended
        or account.low_balance_threshold_nanocredits is None
        or account.low_balance_alert_sent_at is None
    ):
        return None
    return account


def low_balance_notice(account: Account, base: str) -> tuple[str, str]:
    """Subject and body of the low-balance email."""
    threshold = display_credits(account.low_balance_threshold_nanocredits)
    balance = display_credits(account.balance_nanocredits)
    support = current_app.config["SUPPORT_EMAIL"]
    return f"Your OneKey balance is below {threshold} credits", (
        f"Your OneKey balance is {balance} credits, below the {threshold}-credit threshold you "
        "set. Requests are refused once the credit left cannot pay for them.\n\n"
        f"Buy credits: {base}/credits\n\n"
        "We email you once each time your balance falls below the threshold. Change the "
        f"threshold or turn this alert off on your dashboard: {base}/dashboard\n\n"
        f"Questions: {support}"
    )
