"""Admin pages: accounts, an account's money and keys, suspension, termination, refunds."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from app.admin import bp
from app.admin.forms import AdminRefundForm, StatusChangeForm, TerminateForm
from app.admin.refunds import reserved_nanocredits, show_refusal
from app.extensions import db
from app.models import Account, AccountRequest, ApiKey, AuditLogEntry, LedgerEntry
from app.models.accounts import ACCOUNT_STATUSES
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services import lifecycle
from app.services import refunds as refund_service
from app.services.accounts import AccountError
from app.services.payments import display_dollars
from app.services.refunds import RefundError
from app.services.search import contains
from app.tasks import lifecycle as lifecycle_tasks
from app.tasks import mail as mail_tasks

PAGE_SIZE = 50
SEARCH_MAX = 254
REQUESTS_SHOWN = 20


@bp.get("/")
def index():
    return redirect(url_for("admin.accounts"))


@bp.get("/accounts")
def accounts():
    search = request.args.get("q", "").strip()[:SEARCH_MAX]
    status = request.args.get("status", "")
    if status not in ACCOUNT_STATUSES:
        status = ""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = select(Account)
    if search:
        query = query.where(contains(Account.email, search))
    if status:
        query = query.where(Account.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Account.created_at.desc(), Account.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    context = {
        "accounts": rows,
        "search": search,
        "status": status,
        "statuses": ACCOUNT_STATUSES,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "total": total,
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render_template("admin/partials/accounts_table.html", **context)
    return render_template("admin/accounts.html", **context)


def _account_or_404(account_id: int) -> Account:
    account = db.session.get(Account, account_id)
    if account is None:
        abort(404)
    return account


def _default_forms() -> dict:
    return {
        "status": StatusChangeForm(formdata=None),
        "terminate": TerminateForm(formdata=None),
        "refund": AdminRefundForm(formdata=None),
    }


def _ending_context(account: Account) -> dict:
    """What the account's refund and termination forms need: the open request, what is
    refundable now (30 days) and the most a termination may refund (unused paid credit)."""
    open_request = refund_service.open_request(account.id)
    # A termination denies an open request no job has started, giving its reservation back.
    reserved = 0
    if open_request is not None and open_request.state != "processing":
        reserved = reserved_nanocredits(open_request)
    refundable_now = sum(refund_service.refundable_cents_by_purchase(account.id).values())
    termination_max = sum(
        refund_service.refundable_cents_by_purchase(
            account.id, window=None, reserved_nanocredits=reserved
        ).values()
    )
    return {
        "open_request": open_request,
        "refundable_now_cents": refundable_now,
        "termination_max_cents": termination_max,
        "can_terminate": (
            account.status in ("active", "suspended")
            and account.id != current_user.id
            and (open_request is None or open_request.kind != "termination")
        ),
    }


def _render_account(
    account: Account,
    forms: dict | None = None,
    status: int = 200,
    notice: str | None = None,
    refusal: str | None = None,
):
    context = {
        "account": account,
        "keys": db.session.scalars(
            select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.created_at.desc())
        ).all(),
        "ledger": db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account.id)
            .order_by(LedgerEntry.id.desc())
            .limit(100)
        ).all(),
        "audit": db.session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.target_account_id == account.id)
            .order_by(AuditLogEntry.id.desc())
            .limit(50)
        ).all(),
        "requests": db.session.scalars(
            select(AccountRequest)
            .where(AccountRequest.account_id == account.id)
            .order_by(AccountRequest.created_at.desc(), AccountRequest.id.desc())
            .limit(REQUESTS_SHOWN)
        ).all(),
        "forms": {**_default_forms(), **(forms or {})},
        "notice": notice,
        "refusal": refusal,
        "now": utcnow(),
        **_ending_context(account),
    }
    if request.htmx and not request.htmx.history_restore_request:
        # The section that was acted on, and (out of band) the credit and keys it may change.
        return render_template("admin/partials/account_update.html", oob=True, **context), status
    return render_template("admin/account.html", **context), status


def _account_answer(account: Account, message: str):
    if request.htmx:
        return _render_account(account, notice=message)
    flash(message, "success")
    return redirect(url_for("admin.account", account_id=account.id))


@bp.get("/accounts/<int:account_id>")
def account(account_id: int):
    return _render_account(_account_or_404(account_id))


def _change_status(account_id: int, change, done_message: str):
    account = _account_or_404(account_id)
    form = StatusChangeForm()
    if not form.validate_on_submit():
        return _render_account(account, {"status": form}, status=400)
    try:
        change(
            account,
            reason=form.reason.data,
            actor_id=current_user.id,
            customer_message=form.customer_message.data,
        )
    except AccountError as exc:
        db.session.rollback()
        for name, message in exc.errors.items():
            field = form.customer_message if name == "customer_message" else form.reason
            field.errors = [*field.errors, message]
        return _render_account(_account_or_404(account_id), {"status": form}, status=409)
    db.session.commit()
    mail_tasks.enqueue_status_notice(account_id)
    return _account_answer(account, done_message.format(email=account.email))


@bp.post("/accounts/<int:account_id>/suspend")
def suspend(account_id: int):
    return _change_status(account_id, account_service.suspend, "{email} is suspended.")


@bp.post("/accounts/<int:account_id>/unsuspend")
def unsuspend(account_id: int):
    return _change_status(account_id, account_service.unsuspend, "{email} is active again.")


def _start_request(account_id: int, name: str, form, start, describe):
    """Run an admin action that opens an approved request on the account (`start(account, form)`
    returns it), then queue its job after the commit; a refused form or action changes nothing."""
    account = _account_or_404(account_id)
    if not form.validate_on_submit():
        db.session.rollback()
        return _render_account(account, {name: form}, status=400)
    try:
        account_request = start(account, form)
    except (RefundError, AccountError) as exc:
        db.session.rollback()
        refusal = show_refusal(form, exc)
        return _render_account(account, {name: form}, status=409, refusal=refusal)
    done, request_id = describe(account, account_request), account_request.id
    db.session.commit()
    lifecycle_tasks.enqueue_request(request_id)
    return _account_answer(account, done)


@bp.post("/accounts/<int:account_id>/terminate")
def terminate(account_id: int):
    """End the account (Terms §10) with a discretionary refund: keys are revoked at once, the
    lifecycle job (queued after the commit) refunds, forfeits the rest and ends it."""
    return _start_request(
        account_id,
        "terminate",
        TerminateForm(),
        lambda account, form: lifecycle.terminate(
            account,
            reason=form.reason.data,
            customer_message=form.customer_message.data,
            refund_cents=form.refund.cents,
            actor_id=current_user.id,
        ),
        lambda account, termination: (
            f"{account.email} is being terminated: its keys are revoked, and request "
            f"#{termination.id} refunds {display_dollars(termination.amount_cents)} and ends it."
        ),
    )


@bp.post("/accounts/<int:account_id>/refund")
def refund_account(account_id: int):
    """Refund unused credit (Terms §4) on the admin's own decision: the customer's path,
    approved at once; the lifecycle job is queued after the commit."""
    return _start_request(
        account_id,
        "refund",
        AdminRefundForm(),
        lambda account, form: refund_service.start_admin_refund(
            account,
            amount_cents=form.amount.cents,
            reason=form.reason.data,
            actor_id=current_user.id,
        ),
        lambda account, refund: (
            f"Request #{refund.id} refunds {display_dollars(refund.amount_cents)} to "
            f"{account.email}'s card."
        ),
    )
