"""Credit an admin grants or debits on an account page, with a reason and a note the customer may
see or not, posted once however often the form is sent.

A grant is a ledger `grant` (like `flask credits grant`): a credit source that refunds never pay
out (services/refunds.py), so credit given by hand cannot be refunded to a card. A debit is a
negative `adjustment`; it may take at most the available credit (balance − held), checked and
taken in one locked step, so the balance never goes below zero by an admin's hand and credit
reserved for a request in flight or a refund stays reserved.

The form carries a random key made when it is rendered; the ledger's idempotency key is derived
from it, so a double submit or a retried post finds the entry the first one made and posts
nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select, update

from app.extensions import db
from app.models import Account, CreditAdjustment, LedgerEntry
from app.services import ledger
from app.services.audit import clean_reason, record_audit
from app.services.errors import AccountError
from app.services.money import NANOS_PER_CREDIT, nanos_to_credits

DIRECTIONS = ("grant", "debit")
NOTE_MAX = 300
# A guard against a slip of the keyboard (an extra zero or two): larger amounts are refused.
ADJUSTMENT_MAX_NANOCREDITS = 100_000 * NANOS_PER_CREDIT
# What the form's key may look like (secrets.token_urlsafe output, or anything of that shape).
FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
LEDGER_KEY_PREFIX = "admin-adjustment:"


@dataclass(frozen=True)
class Adjustment:
    """The outcome of a post: the adjustment, and whether this post made it (False: the form's
    key had been posted already, and nothing more was posted)."""

    adjustment: CreditAdjustment
    created: bool


def ledger_key(form_key: str) -> str:
    return f"{LEDGER_KEY_PREFIX}{form_key}"


def _clean_note(note: str | None, visible: bool) -> str | None:
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise AccountError({"note": f"The note can be at most {NOTE_MAX} characters."})
    if visible and note is None:
        raise AccountError(
            {"note": "Write the note the customer will see, or leave it hidden from them."}
        )
    return note


def _already_posted(
    account_id: int, kind: str, amount: int, form_key: str
) -> CreditAdjustment | None:
    """The adjustment this form's key made, if it was posted already.

    Raises AccountError when the key was used for another movement (the form was sent again with
    other values after it had been recorded).
    """
    entry = db.session.scalar(
        select(LedgerEntry).where(LedgerEntry.idempotency_key == ledger_key(form_key))
    )
    if entry is None:
        return None
    adjustment = db.session.scalar(
        select(CreditAdjustment).where(CreditAdjustment.ledger_entry_id == entry.id)
    )
    if adjustment is None or (entry.account_id, entry.kind, entry.amount_nanocredits) != (
        account_id,
        kind,
        amount,
    ):
        raise _form_used_already()
    return adjustment


def _form_used_already() -> AccountError:
    return AccountError(
        {
            "form": "This form was already used for another adjustment: reload the page to "
            "make a new one."
        }
    )


def _take_available(account_id: int, amount: int) -> bool:
    """Lock the account's row if at least `amount` of it is available (balance − held), in one
    statement: no hold can be placed between the check and the debit, which is posted before
    the commit releases the lock. False (nothing locked on PostgreSQL) when too little is."""
    locked = db.session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.balance_nanocredits - Account.held_nanocredits >= amount,
        )
        .values(balance_nanocredits=Account.balance_nanocredits)
        .returning(Account.id)
        .execution_options(synchronize_session=False)
    ).first()
    return locked is not None


def adjust_credit(
    account: Account,
    *,
    direction: str,
    amount_nanocredits: int,
    reason: str,
    note: str | None,
    note_visible: bool,
    form_key: str,
    actor_id: int,
) -> Adjustment:
    """Grant (`direction` "grant") or debit ("debit") `amount_nanocredits` (positive) on the
    account, audited, once per `form_key`.

    Raises AccountError, naming the field, and changes nothing: without a reason; for an amount
    not above zero or above the guard; a note too long, or none while it is to be shown; a
    malformed form key, or one used for another adjustment; an account that is closed or
    terminated (its balance stays at zero) or the admin's own; a debit above the available
    credit.
    """
    if direction not in DIRECTIONS:
        raise AccountError({"direction": "Choose to grant or to debit credit."})
    reason = clean_reason(reason)
    note = _clean_note(note, note_visible)
    if not 0 < amount_nanocredits <= ADJUSTMENT_MAX_NANOCREDITS:
        raise AccountError(
            {
                "amount": "Enter an amount above 0 and at most "
                f"{nanos_to_credits(ADJUSTMENT_MAX_NANOCREDITS)} credits."
            }
        )
    if not FORM_KEY.fullmatch(form_key or ""):
        raise AccountError({"form": "This form is incomplete: reload the page and try again."})
    kind, signed = ("grant", amount_nanocredits)
    if direction == "debit":
        kind, signed = ("adjustment", -amount_nanocredits)
    existing = _already_posted(account.id, kind, signed, form_key)
    if existing is not None:
        return Adjustment(existing, created=False)
    if account.is_ended:
        raise AccountError({"form": f"The account is {account.status}: its balance stays at zero."})
    if actor_id == account.id:
        raise AccountError({"form": "You cannot adjust your own account's credit."})
    if direction == "debit" and not _take_available(account.id, amount_nanocredits):
        # A second post of the same form may have waited here for the first one's commit.
        existing = _already_posted(account.id, kind, signed, form_key)
        if existing is not None:
            return Adjustment(existing, created=False)
        db.session.refresh(account)
        raise AccountError(
            {
                "amount": "A debit can take at most the available credit (balance − held), "
                f"{nanos_to_credits(max(account.available_nanocredits, 0))} credits now."
            }
        )
    # The customer's Activity page shows the ledger entry's public note.
    public_note = note if note_visible else None
    try:
        if kind == "grant":
            entry, created = ledger.grant_credits(
                account.id,
                amount_nanocredits,
                note=reason,
                public_note=public_note,
                idempotency_key=ledger_key(form_key),
                actor_id=actor_id,
            )
        else:
            entry, created = ledger.post_entry(
                account_id=account.id,
                kind=kind,
                amount_nanocredits=signed,
                idempotency_key=ledger_key(form_key),
                reference_type="admin",
                reference_id=str(actor_id),
                note=reason,
                public_note=public_note,
                actor_id=actor_id,
            )
    except ledger.IdempotencyConflict:
        raise _form_used_already() from None
    if not created:
        # Another post of this form got there between the look above and this one.
        return Adjustment(_already_posted(account.id, kind, signed, form_key), created=False)
    adjustment = CreditAdjustment(
        account_id=account.id,
        ledger_entry_id=entry.id,
        amount_nanocredits=signed,
        reason=reason,
        note=note,
        note_visible=note_visible,
        actor_id=actor_id,
    )
    db.session.add(adjustment)
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action=f"credit.{direction}",
        target_account_id=account.id,
        reason=reason,
        details={
            "adjustment": adjustment.id,
            "ledger_entry": entry.id,
            "amount_nanocredits": signed,
            "note": note,
            "note_visible": note_visible,
        },
    )
    db.session.refresh(account)
    return Adjustment(adjustment, created=True)


def adjustments_of(account_id: int, ledger_entry_ids: list[int]) -> dict[int, CreditAdjustment]:
    """The adjustments behind these ledger entries of the account, by ledger entry id."""
    if not ledger_entry_ids:
        return {}
    return {
        adjustment.ledger_entry_id: adjustment
        for adjustment in db.session.scalars(
            select(CreditAdjustment).where(
                CreditAdjustment.account_id == account_id,
                CreditAdjustment.ledger_entry_id.in_(ledger_entry_ids),
            )
        )
    }
