"""The ledger, holds and settlement (DESIGN.md, "Money").

Every credit movement is one append-only ledger row with a unique idempotency key, inserted in the same
transaction as the update of the account's cached balance. Holds reserve credit with one conditional
UPDATE, so two requests can never both spend the same credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Account, AccountRequest, ApiKey, Hold, LedgerEntry
from app.models.ledger import LEDGER_KINDS
from app.models.lifecycle import OPEN_STATES
from app.models.types import utcnow
from app.services import holds


class LedgerError(Exception):
    """Base class of the money errors."""


class IdempotencyConflict(LedgerError):
    """An idempotency key was reused for a different movement."""


class AccountNotActive(LedgerError):
    def __init__(self, status: str):
        super().__init__(f"account is {status}")
        self.status = status


class KeyNotUsable(LedgerError):
    """The key is revoked, expired or over its credit limit."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InsufficientCredit(LedgerError):
    def __init__(self, balance: int, held: int, required: int):
        super().__init__("insufficient credits")
        self.balance, self.held, self.required = balance, held, required


@dataclass(frozen=True)
class Mismatch:
    account_id: int
    what: str
    cached: int
    computed: int

    def __str__(self) -> str:
        return (
            f"account {self.account_id}: {self.what} is {self.cached}, "
            f"the ledger says {self.computed}"
        )


def post_entry(
    *,
    account_id: int,
    kind: str,
    amount_nanocredits: int,
    idempotency_key: str,
    reference_type: str | None = None,
    reference_id: str | None = None,
    note: str | None = None,
    public_note: str | None = None,
    actor_id: int | None = None,
) -> tuple[LedgerEntry, bool]:
    """Append one movement and move the cached balance with it; returns (entry, created).

    A key already used for the same movement returns the stored entry and changes nothing. Raises
    IdempotencyConflict when the key was used for a different account, kind or amount.
    """
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    existing = _entry_by_key(idempotency_key)
    if existing is None:
        entry = LedgerEntry(
            account_id=account_id,
            kind=kind,
            amount_nanocredits=amount_nanocredits,
            idempotency_key=idempotency_key,
            reference_type=reference_type,
            reference_id=reference_id,
            note=note,
            public_note=public_note,
            actor_id=actor_id,
        )
        try:
            with db.session.begin_nested():
                db.session.add(entry)
        except IntegrityError:
            # Another transaction inserted the same key between our read and our insert.
            existing = _entry_by_key(idempotency_key)
            if existing is None:
                raise
        else:
            db.session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(balance_nanocredits=Account.balance_nanocredits + amount_nanocredits)
            )
            return entry, True
    if (existing.account_id, existing.kind, existing.amount_nanocredits) != (
        account_id,
        kind,
        amount_nanocredits,
    ):
        raise IdempotencyConflict(f"idempotency key {idempotency_key!r} used for another movement")
    return existing, False


def _entry_by_key(idempotency_key: str) -> LedgerEntry | None:
    return db.session.scalar(
        select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key)
    )


# The longest note for the customer a grant may carry (it is shown in a table cell).
PUBLIC_NOTE_MAX = 300


def grant_credits(
    account_id: int,
    amount_nanocredits: int,
    *,
    note: str,
    idempotency_key: str,
    actor_id: int | None = None,
    public_note: str | None = None,
) -> tuple[LedgerEntry, bool]:
    """A non-refundable grant. `note` is for admins; `public_note`, when given, is what the
    customer's activity shows about it (without one it reads as a credit from OneKey).

    Raises ValueError unless the amount is positive, a note is given and the public note is at
    most PUBLIC_NOTE_MAX characters.
    """
    if amount_nanocredits <= 0:
        raise ValueError("a grant must be a positive amount")
    if not note.strip():
        raise ValueError("a grant needs a note")
    public_note = (public_note or "").strip() or None
    if public_note is not None and len(public_note) > PUBLIC_NOTE_MAX:
        raise ValueError(f"the note for the customer is longer than {PUBLIC_NOTE_MAX} characters")
    return post_entry(
        account_id=account_id,
        kind="grant",
        amount_nanocredits=amount_nanocredits,
        idempotency_key=idempotency_key,
        reference_type="admin" if actor_id else "operator",
        reference_id=str(actor_id) if actor_id else None,
        note=note.strip(),
        public_note=public_note,
        actor_id=actor_id,
    )


def place_hold(
    *,
    account_id: int,
    amount_nanocredits: int,
    expires_at: datetime,
    api_key_id: int | None = None,
    request_id: str | None = None,
) -> Hold:
    """Reserve a fixed amount, atomically checking the account and the key (the proxy reserves
    through `holds.reserve`, which sizes the amount itself; this is the same statement).

    Raises AccountNotActive, KeyNotUsable or InsufficientCredit; nothing is reserved then.
    """
    if amount_nanocredits <= 0:
        raise ValueError("a hold must be a positive amount")
    db.session.flush()
    outcome = holds.reserve(
        holds.HoldRequest(
            account_id=account_id,
            key_id=api_key_id,
            input_cost=amount_nanocredits,
            output_price=0,
            requested_output=1,
            expires_at=expires_at,
            request_id=request_id,
        ),
        connection=db.session.connection(),
    )
    if isinstance(outcome, holds.Refusal):
        raise _refusal_error(outcome, amount_nanocredits)
    _expire_cached_rows()
    return db.session.get(Hold, outcome.hold_id)


KEY_PROBLEMS = {
    "key_invalid": "unknown key",
    "key_revoked": "revoked",
    "key_expired": "expired",
    "key_paused": "paused",
}


def _refusal_error(refusal: holds.Refusal, amount: int) -> LedgerError | ValueError:
    if refusal.reason in KEY_PROBLEMS:
        return KeyNotUsable(KEY_PROBLEMS[refusal.reason])
    if refusal.reason == "account_not_active":
        return AccountNotActive(refusal.account_status)
    if refusal.reason in ("insufficient_credits", "key_limit_reached"):
        if refusal.key_remaining is not None and refusal.key_remaining < amount:
            return KeyNotUsable("limit_reached")
        return InsufficientCredit(refusal.balance, refusal.held, amount)
    return ValueError(f"no hold placed: {refusal.reason}")


def _expire_cached_rows() -> None:
    """Statements outside the ORM moved balances: loaded accounts, keys and holds are re-read."""
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, Account | ApiKey | Hold):
            db.session.expire(obj)


def _move_key_held(api_key_id: int, delta: int) -> None:
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == api_key_id)
        .values(held_nanocredits=ApiKey.held_nanocredits + delta)
    )


def _release_reservation(hold) -> None:
    """Give back a closed hold's reservation (`hold` has account_id, api_key_id, amount)."""
    db.session.execute(
        update(Account)
        .where(Account.id == hold.account_id)
        .values(held_nanocredits=Account.held_nanocredits - hold.amount_nanocredits)
    )
    if hold.api_key_id is not None:
        _move_key_held(hold.api_key_id, -hold.amount_nanocredits)


def _claim_hold(hold_id: int, from_status: str, to_status: str, **values):
    """Move a hold from one status to another. Only the one caller that did it gets the hold's
    (account_id, api_key_id, amount_nanocredits); everyone else gets None."""
    return db.session.execute(
        update(Hold)
        .where(Hold.id == hold_id, Hold.status == from_status)
        .values(status=to_status, closed_at=utcnow(), **values)
        .returning(Hold.account_id, Hold.api_key_id, Hold.amount_nanocredits)
        .execution_options(synchronize_session=False)
    ).first()


def settle_hold(hold_id: int, cost_nanocredits: int, *, reference_id: str | None = None) -> bool:
    """Debit the actual cost and release the hold, exactly once; False if it was already closed.

    A hold that the expiry job already released is still settled late: the cost is debited, the
    reservation is not released twice. The debit may take the balance below zero; the account is
    then flagged for an admin. Runs in the session's transaction (see `holds.settle`).
    """
    db.session.flush()
    settled = holds.settle(
        hold_id, cost_nanocredits, reference_id=reference_id, connection=db.session.connection()
    )
    _expire_cached_rows()
    return settled


def reserve_for_refund(account_id: int, amount_nanocredits: int) -> Hold:
    """Reserve credit on its way to a refund: a hold that never expires by itself, placed with one
    conditional UPDATE (whatever the account's status: a refund can follow a suspension).

    Raises InsufficientCredit when balance − held is below the amount; nothing is reserved then.
    """
    if amount_nanocredits <= 0:
        raise ValueError("a reservation must be a positive amount")
    db.session.flush()
    reserved = db.session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.balance_nanocredits - Account.held_nanocredits >= amount_nanocredits,
        )
        .values(held_nanocredits=Account.held_nanocredits + amount_nanocredits)
        .returning(Account.id)
        .execution_options(synchronize_session=False)
    ).first()
    if reserved is None:
        account = db.session.get(Account, account_id, populate_existing=True)
        raise InsufficientCredit(
            account.balance_nanocredits, account.held_nanocredits, amount_nanocredits
        )
    hold = Hold(
        account_id=account_id,
        amount_nanocredits=amount_nanocredits,
        status="open",
        purpose="refund",
        expires_at=None,
        settled_amount_nanocredits=0,
    )
    db.session.add(hold)
    db.session.flush()
    _expire_cached_rows()
    return hold


def _open_reservation(hold_id: int) -> Hold:
    """The refund reservation, locked and read afresh. Raises ValueError unless it is open."""
    db.session.flush()
    hold = db.session.get(Hold, hold_id, with_for_update=True, populate_existing=True)
    if hold is None or hold.status != "open" or hold.purpose != "refund":
        raise ValueError(f"hold {hold_id} is not an open refund reservation")
    return hold


def take_from_reservation(hold_id: int, amount_nanocredits: int) -> None:
    """Move part of a refund reservation out of `held` once that part was refunded (its ledger
    debit is posted by the caller in the same transaction); the hold is settled when nothing of
    it is left. Raises ValueError for more than the hold still reserves, or a closed hold."""
    hold = _open_reservation(hold_id)
    if not 0 < amount_nanocredits <= hold.amount_nanocredits:
        raise ValueError(
            f"hold {hold_id} reserves {hold.amount_nanocredits}, not {amount_nanocredits}"
        )
    hold.settled_amount_nanocredits = (hold.settled_amount_nanocredits or 0) + amount_nanocredits
    if amount_nanocredits == hold.amount_nanocredits:
        hold.status = "settled"
        hold.closed_at = utcnow()
    else:
        hold.amount_nanocredits -= amount_nanocredits
    db.session.execute(
        update(Account)
        .where(Account.id == hold.account_id)
        .values(held_nanocredits=Account.held_nanocredits - amount_nanocredits)
    )
    db.session.flush()
    _expire_cached_rows()


def shrink_reservation(hold_id: int, amount_nanocredits: int) -> None:
    """Give back what of an open refund reservation is above `amount_nanocredits` (an approval of
    less than was asked); releasing the whole of it is `release_hold`."""
    hold = _open_reservation(hold_id)
    excess = hold.amount_nanocredits - amount_nanocredits
    if excess < 0 or amount_nanocredits <= 0:
        raise ValueError(
            f"hold {hold_id} reserves {hold.amount_nanocredits}, not {amount_nanocredits}"
        )
    if excess:
        hold.amount_nanocredits = amount_nanocredits
        db.session.execute(
            update(Account)
            .where(Account.id == hold.account_id)
            .values(held_nanocredits=Account.held_nanocredits - excess)
        )
        db.session.flush()
        _expire_cached_rows()


def open_request_holds(account_id: int) -> int:
    """How many of the account's requests are still in flight (their holds open or unsettled)."""
    return db.session.scalar(
        select(func.count())
        .select_from(Hold)
        .where(Hold.account_id == account_id, Hold.status == "open", Hold.purpose == "request")
    )


def release_hold(hold_id: int) -> bool:
    """Release what a hold still reserves without charge, exactly once; False if it was already
    closed (a refund reservation denied, failed or left over after its refund)."""
    hold = _claim_hold(
        hold_id,
        "open",
        "released",
        settled_amount_nanocredits=func.coalesce(Hold.settled_amount_nanocredits, 0),
    )
    if hold is None:
        return False
    _release_reservation(hold)
    _expire_cached_rows()
    return True


def expire_holds(now: datetime | None = None) -> int:
    """Release every open hold past its expiry (left by a crashed process); returns how many."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Hold.id).where(Hold.status == "open", Hold.expires_at < now).order_by(Hold.id)
    ).all()
    return release_as_expired(due)


def release_as_expired(hold_ids) -> int:
    """Release these holds, still open, as expired (a late settlement still debits); returns how
    many were released here."""
    expired = 0
    for hold_id in hold_ids:
        hold = _claim_hold(hold_id, "open", "expired")
        if hold is not None:
            _release_reservation(hold)
            expired += 1
    return expired


def open_request_holds_placed_before(moment: datetime) -> list[tuple[int, str | None]]:
    """(id, request id) of every request's hold still open that was placed before `moment`."""
    return [
        tuple(row)
        for row in db.session.execute(
            select(Hold.id, Hold.request_id)
            .where(Hold.status == "open", Hold.purpose == "request", Hold.created_at < moment)
            .order_by(Hold.id)
        )
    ]


def flag_if_negative(account_id: int) -> None:
    db.session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.balance_nanocredits < 0,
            Account.flagged_reason.is_(None),
        )
        .values(flagged_reason="negative balance")
    )


def check_invariants() -> list[Mismatch]:
    """Every account's balance == sum(ledger) and held == sum(open holds); every key's held too.
    Every open refund reservation belongs to an open request (or the credit would stay reserved
    for ever), and a closed or terminated account holds nothing unless it is flagged for an admin
    (a late settlement or chargeback)."""
    ledger_sums = dict(
        db.session.execute(
            select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_nanocredits)).group_by(
                LedgerEntry.account_id
            )
        ).all()
    )
    open_holds = dict(
        db.session.execute(
            select(Hold.account_id, func.sum(Hold.amount_nanocredits))
            .where(Hold.status == "open")
            .group_by(Hold.account_id)
        ).all()
    )
    key_holds = dict(
        db.session.execute(
            select(Hold.api_key_id, func.sum(Hold.amount_nanocredits))
            .where(Hold.status == "open", Hold.api_key_id.is_not(None))
            .group_by(Hold.api_key_id)
        ).all()
    )
    mismatches = []
    accounts = db.session.execute(
        select(Account.id, Account.balance_nanocredits, Account.held_nanocredits).order_by(
            Account.id
        )
    ).all()
    for account_id, balance, held in accounts:
        expected_balance = int(ledger_sums.get(account_id) or 0)
        expected_held = int(open_holds.get(account_id) or 0)
        if balance != expected_balance:
            mismatches.append(Mismatch(account_id, "balance", balance, expected_balance))
        if held != expected_held:
            mismatches.append(Mismatch(account_id, "held", held, expected_held))
    key_usage = dict(
        db.session.execute(
            select(Hold.api_key_id, func.sum(Hold.settled_amount_nanocredits))
            .where(Hold.status == "settled", Hold.api_key_id.is_not(None))
            .group_by(Hold.api_key_id)
        ).all()
    )
    keys = db.session.execute(
        select(ApiKey.id, ApiKey.account_id, ApiKey.held_nanocredits, ApiKey.usage_nanocredits)
    ).all()
    for key_id, account_id, held, usage in keys:
        expected_held = int(key_holds.get(key_id) or 0)
        if held != expected_held:
            mismatches.append(Mismatch(account_id, f"key {key_id} held", held, expected_held))
        expected_usage = int(key_usage.get(key_id) or 0)
        if usage != expected_usage:
            mismatches.append(Mismatch(account_id, f"key {key_id} usage", usage, expected_usage))
    stray_reservations = db.session.execute(
        select(Hold.account_id, Hold.id, Hold.amount_nanocredits)
        .outerjoin(
            AccountRequest,
            (AccountRequest.hold_id == Hold.id) & AccountRequest.state.in_(OPEN_STATES),
        )
        .where(Hold.status == "open", Hold.purpose == "refund", AccountRequest.id.is_(None))
    ).all()
    for account_id, hold_id, amount in stray_reservations:
        mismatches.append(
            Mismatch(account_id, f"refund reservation {hold_id} of no open request", amount, 0)
        )
    ended_with_credit = db.session.execute(
        select(Account.id, Account.status, Account.balance_nanocredits).where(
            Account.status.in_(("closed", "terminated")),
            Account.balance_nanocredits != 0,
            Account.flagged_reason.is_(None),
        )
    ).all()
    for account_id, status, balance in ended_with_credit:
        mismatches.append(Mismatch(account_id, f"balance of a {status} account", balance, 0))
    return mismatches
