"""Closing an account (the customer asks, Terms §10) and terminating one (OneKey decides, §10).

Both stop the account spending at once (every key revoked: the hold statement refuses a revoked
key in every process), are decided by an admin, and are carried out by the `lifecycle` job: it
waits for the requests in flight to settle, refunds what was approved (`services/refunds.py`),
writes off whatever is left with one `forfeit` entry so that the balance is exactly zero, and ends
the account and its sessions. The ledger and usage stay for accounting.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import Account, AccountRequest, ApiKey
from app.models.types import utcnow
from app.services import ledger, refunds
from app.services.accounts import AccountError
from app.services.audit import clean_reason, record_audit
from app.services.refunds import RefundError

# A closure or termination waits this long between looks at the requests still in flight.
IN_FLIGHT_RECHECK = timedelta(seconds=30)
# An approved request no job has taken after this long is queued again (its job was lost).
STALLED_AFTER = timedelta(minutes=2)
ENDED_STATUS = {"closure": "closed", "termination": "terminated"}


def revoke_every_key(account_id: int) -> int:
    """Revoke the account's keys at once; returns how many were still usable."""
    return db.session.execute(
        update(ApiKey)
        .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount


def request_closure(
    account: Account,
    *,
    password: str,
    confirmed: bool,
    refund_cents: int,
    note: str | None = None,
) -> AccountRequest:
    """The customer asks to close their account, with the refund they chose (up to what is
    refundable now). Its keys are revoked at once; an admin decides the rest.

    Raises AccountError for a wrong password or a missing confirmation, RefundError when another
    request is open or the refund is not available; nothing changes then.
    """
    errors = {}
    if not check_password_hash(account.password_hash, password or ""):
        errors["password"] = "Your password is not correct."  # noqa: S105 (a message)
    if not confirmed:
        errors["confirm"] = "Tick the box to confirm that you want to close your account."
    if errors:
        raise AccountError(errors)
    if account.is_ended:
        raise RefundError(f"The account is {account.status} already.")
    if account.is_admin:
        raise RefundError("An admin account is closed by another admin, by termination.")
    request = refunds.open_new_request(
        account,
        kind="closure",
        refund_cents=refund_cents,
        actor_id=account.id,
        note=refunds.clean_note(note),
    )
    revoked = revoke_every_key(account.id)
    record_audit(
        actor_id=account.id,
        action="closure.request",
        target_account_id=account.id,
        details={"request": request.id, "refund_cents": refund_cents, "keys_revoked": revoked},
    )
    return request


def terminate(
    account: Account,
    *,
    reason: str,
    customer_message: str | None,
    refund_cents: int,
    actor_id: int,
) -> AccountRequest:
    """OneKey ends an account (active or suspended), with a discretionary refund from 0 up to the
    unused paid credit, whatever its age. Keys are revoked at once; the job does the rest.

    A refund or closure the customer asked for and no job has started is denied in its favour.
    Raises AccountError without a reason, RefundError when the account has ended or is being
    terminated already, a request of it is being carried out right now, or the refund is more
    than the unused paid credit.
    """
    reason = clean_reason(reason)
    if account.is_ended:
        raise RefundError(f"The account is {account.status} already.")
    if actor_id == account.id:
        raise RefundError("You cannot terminate your own account.")
    superseded = refunds.open_request(account.id)
    if superseded is not None:
        db.session.refresh(superseded, with_for_update=True)  # a job may be taking it now
    if superseded is not None and superseded.is_open:
        if superseded.kind == "termination":
            raise RefundError(
                f"The account is being terminated already (request #{superseded.id})."
            )
        if superseded.state == "processing":
            raise RefundError(
                "A request of this account is being carried out; terminate it when it is done."
            )
        refunds.deny(
            superseded,
            reason="superseded by the account's termination",
            actor_id=actor_id,
            customer_message=None,
        )
    request = refunds.open_new_request(
        account, kind="termination", refund_cents=refund_cents, actor_id=actor_id
    )
    request.customer_message = refunds.clean_note(customer_message)
    refunds.approve(request, amount_cents=refund_cents, reason=reason, actor_id=actor_id)
    revoke_every_key(account.id)
    record_audit(
        actor_id=actor_id,
        action="account.terminate",
        target_account_id=account.id,
        reason=reason,
        details={"request": request.id, "refund_cents": refund_cents},
    )
    return request


def in_flight(request: AccountRequest) -> str | None:
    """What the account's closure still waits for (requests in flight to settle), or None."""
    count = ledger.open_request_holds(request.account_id)
    if not count:
        return None
    return f"{count} request{'s' if count != 1 else ''} in flight to be billed"


def complete(request: AccountRequest) -> int:
    """The refunds are made: write off what is left, end the account and its sessions.
    Returns the nanocredits forfeited (negative: a debt written off)."""
    refunds.finish(request)
    account = db.session.get(
        Account, request.account_id, with_for_update=True, populate_existing=True
    )
    forfeited = account.balance_nanocredits
    if forfeited:
        ledger.post_entry(
            account_id=account.id,
            kind="forfeit",
            amount_nanocredits=-forfeited,
            idempotency_key=f"forfeit:request:{request.id}",
            reference_type="account_request",
            reference_id=str(request.id),
            note=f"{request.kind}: unused credit not refunded",
        )
    revoke_every_key(account.id)
    previous = account.status
    db.session.refresh(account)
    account.status = ENDED_STATUS[request.kind]
    account.status_reason = request.decision_reason
    account.status_changed_at = utcnow()
    account.session_version += 1
    request.forfeited_nanocredits = forfeited
    db.session.flush()
    record_audit(
        actor_id=None,
        action=f"account.{ENDED_STATUS[request.kind]}",
        target_account_id=account.id,
        reason=request.decision_reason,
        details={
            "request": request.id,
            "from": previous,
            "refunded_cents": request.refunded_cents,
            "forfeited_nanocredits": forfeited,
        },
    )
    return forfeited


def stalled_requests(now=None) -> list[int]:
    """Requests whose job was lost: approved and not taken for a while, or processing under a
    lease that ran out (the worker died). Their job is queued again; the lease keeps two runs
    apart."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(AccountRequest.id).where(
                (
                    (AccountRequest.state == "approved")
                    & (AccountRequest.updated_at < now - STALLED_AFTER)
                )
                | (
                    (AccountRequest.state == "processing")
                    & (AccountRequest.lease_until.is_(None) | (AccountRequest.lease_until < now))
                    & (AccountRequest.updated_at < now - STALLED_AFTER)
                )
            )
        )
    )
