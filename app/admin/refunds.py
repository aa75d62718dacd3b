"""Admin pages for refunds, closures and terminations: every request, one request in full beside
the account's purchases, usage and ledger, and the decisions on it (audited by the services)."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import aliased, selectinload

from app.admin import bp
from app.admin.forms import ApproveForm, DenyForm
from app.extensions import db
from app.models import Account, AccountRequest, Hold, LedgerEntry, Purchase, UsageRecord
from app.models.lifecycle import REQUEST_KINDS, REQUEST_STATES
from app.services import refunds as refund_service
from app.services.accounts import AccountError
from app.services.payments import plain_dollars
from app.services.refunds import RefundError
from app.tasks import lifecycle as lifecycle_tasks
from app.tasks import mail as mail_tasks
from app.web_helpers import is_fragment_request, page_number, paginate, render_page_or_fragment

# Requests an admin has to act on: new ones, and failed ones to retry or give up on.
WAITING_STATES = ("requested", "failed")
STATE_FILTERS = (("waiting", "waiting for a decision"), *REQUEST_STATES)
RECENT_ROWS = 20
PAGE_SIZE = 50
KIND_LABELS = {"refund": "Refund", "closure": "Closure", "termination": "Termination"}


def _requests_waiting() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(AccountRequest)
        .where(AccountRequest.state.in_(WAITING_STATES))
    )


@bp.context_processor
def request_helpers() -> dict:
    # A function, so only the pages that show the navigation count.
    return {"requests_waiting": _requests_waiting, "kind_labels": KIND_LABELS}


def show_refusal(form, error: RefundError | AccountError) -> str | None:
    """Put a service's refusal on the form field it names; returns the rest of it, for a notice
    above the forms (the form it came from may no longer be offered)."""
    if isinstance(error, RefundError):
        return str(error)
    rest = []
    for name, message in error.errors.items():
        field = form._fields.get(name)
        if field is not None:
            field.errors = [*field.errors, message]
        else:
            rest.append(message)
    return " ".join(rest) or None


# The list.


@bp.get("/refunds", endpoint="refunds")
def list_requests():
    state = request.args.get("status", "")
    if state not in ("waiting", *REQUEST_STATES):
        state = ""
    kind = request.args.get("kind", "")
    if kind not in REQUEST_KINDS:
        kind = ""
    decider = aliased(Account)
    query = (
        select(AccountRequest, Account.email, decider.email)
        .join(Account, Account.id == AccountRequest.account_id)
        .outerjoin(decider, decider.id == AccountRequest.decided_by)
    )
    if state == "waiting":
        query = query.where(AccountRequest.state.in_(WAITING_STATES))
    elif state:
        query = query.where(AccountRequest.state == state)
    if kind:
        query = query.where(AccountRequest.kind == kind)
    listed = paginate(
        query.order_by(AccountRequest.created_at.desc(), AccountRequest.id.desc()),
        page_number(),
        PAGE_SIZE,
    )
    return render_page_or_fragment(
        "admin/refunds.html",
        "admin/partials/requests_table.html",
        requests=listed.items,
        status=state,
        statuses=STATE_FILTERS,
        kind=kind,
        kinds=REQUEST_KINDS,
        page=listed.page,
        pages=listed.pages,
        total=listed.total,
    )


# One request.


def _request_or_404(request_id: int, *, for_update: bool = False) -> AccountRequest:
    # Locked for a decision: the job takes an approved request under the same lock.
    account_request = db.session.get(
        AccountRequest,
        request_id,
        with_for_update=for_update,
        options=[selectinload(AccountRequest.parts)],
    )
    if account_request is None:
        abort(404)
    return account_request


def reserved_nanocredits(account_request: AccountRequest) -> int:
    """What the request still reserves: credit its own approval may pay out."""
    if account_request.hold_id is None:
        return 0
    hold = db.session.get(Hold, account_request.hold_id)
    return hold.amount_nanocredits if hold is not None and hold.status == "open" else 0


def _other_open_request(account_request: AccountRequest) -> AccountRequest | None:
    """The account's other request in progress: a failed request cannot be retried beside it
    (an account has one open request at a time)."""
    other = refund_service.open_request(account_request.account_id)
    return other if other is not None and other.id != account_request.id else None


def _default_forms(account_request: AccountRequest) -> dict:
    return {
        "approve": ApproveForm(formdata=None, amount=plain_dollars(account_request.amount_cents)),
        "deny": DenyForm(formdata=None),
    }


def _request_context(account_request: AccountRequest, **extra) -> dict:
    account = account_request.account
    refundable = refund_service.refundable_cents_by_purchase(
        account.id,
        window=refund_service.window_of(account_request.kind),
        reserved_nanocredits=reserved_nanocredits(account_request),
    )
    forms = _default_forms(account_request)
    forms.update(extra.pop("failed", None) or {})
    return {
        "req": account_request,
        "account": account,
        "purchases": db.session.scalars(
            select(Purchase)
            .where(Purchase.account_id == account.id, Purchase.status == "succeeded")
            .order_by(Purchase.succeeded_at.desc(), Purchase.id.desc())
        ).all(),
        "refundable": refundable,
        "refundable_total": sum(refundable.values()),
        "usage": db.session.scalars(
            select(UsageRecord)
            .where(UsageRecord.account_id == account.id)
            .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())
            .limit(RECENT_ROWS)
        ).all(),
        "ledger": db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account.id)
            .order_by(LedgerEntry.id.desc())
            .limit(RECENT_ROWS)
        ).all(),
        "other_open": _other_open_request(account_request),
        "forms": forms,
        "notice": None,
        "refusal": None,
        **extra,
    }


def _render_request(account_request: AccountRequest, status: int = 200, **extra):
    return render_page_or_fragment(
        "admin/refund_request.html",
        "admin/partials/request_update.html",
        status_code=status,
        oob=True,
        **_request_context(account_request, **extra),
    )


@bp.get("/refunds/<int:request_id>")
def refund_request(request_id: int):
    return _render_request(_request_or_404(request_id))


def _decision_answer(account_request: AccountRequest, message: str):
    if is_fragment_request():
        return _render_request(account_request, notice=message)
    flash(message, "success")
    return redirect(url_for("admin.refund_request", request_id=account_request.id))


@bp.post("/refunds/<int:request_id>/approve")
def approve_request(request_id: int):
    """Approve (or, for a failed request, retry) for the amount asked or less; the job is queued
    after the commit."""
    account_request = _request_or_404(request_id, for_update=True)
    form = ApproveForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return _render_request(account_request, 400, failed={"approve": form})
    retry = account_request.state == "failed"
    try:
        refund_service.approve(
            account_request,
            amount_cents=form.amount.cents,
            reason=form.reason.data,
            actor_id=current_user.id,
        )
    except (RefundError, AccountError) as exc:
        db.session.rollback()
        refusal = show_refusal(form, exc)
        return _render_request(account_request, 409, failed={"approve": form}, refusal=refusal)
    db.session.commit()
    lifecycle_tasks.enqueue_request(request_id)
    what = "queued again" if retry else "approved"
    return _decision_answer(
        account_request,
        f"Request #{account_request.id} is {what}: the lifecycle job carries it out.",
    )


@bp.post("/refunds/<int:request_id>/deny")
def deny_request(request_id: int):
    """Deny a request, give up on a failed one, or withdraw an approval no job has started on;
    the customer is emailed after the commit."""
    account_request = _request_or_404(request_id, for_update=True)
    form = DenyForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return _render_request(account_request, 400, failed={"deny": form})
    try:
        refund_service.deny(
            account_request,
            reason=form.reason.data,
            actor_id=current_user.id,
            customer_message=form.customer_message.data,
        )
    except (RefundError, AccountError) as exc:
        db.session.rollback()
        refusal = show_refusal(form, exc)
        return _render_request(account_request, 409, failed={"deny": form}, refusal=refusal)
    db.session.commit()
    mail_tasks.enqueue_request_update(request_id)
    return _decision_answer(
        account_request,
        f"Request #{account_request.id} is denied; its reserved credit is released and the "
        "customer is told.",
    )
