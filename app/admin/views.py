"""Admin pages: finding an account, and one account in full (status history, keys, purchases,
refunds, usage, ledger, audit) with what an admin does to it: suspension, termination, refunds,
credit adjustments."""

from __future__ import annotations

from datetime import date, timedelta

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from app.admin import bp
from app.admin.forms import (
    AdminRefundForm,
    CreditAdjustmentForm,
    StatusChangeForm,
    TerminateForm,
)
from app.admin.refunds import reserved_nanocredits, show_refusal
from app.extensions import db
from app.models import (
    Account,
    AccountRequest,
    ApiKey,
    LedgerEntry,
    Purchase,
    RefundPart,
    UsageRecord,
)
from app.models.accounts import ACCOUNT_STATUSES
from app.models.types import utcnow
from app.services import account_search, lifecycle
from app.services import accounts as account_service
from app.services import adjustments as adjustment_service
from app.services import audit as audit_service
from app.services import refunds as refund_service
from app.services.accounts import AccountError
from app.services.money import display_credits
from app.services.payments import display_dollars
from app.services.refunds import RefundError
from app.tasks import lifecycle as lifecycle_tasks
from app.tasks import mail as mail_tasks
from app.web_helpers import is_fragment_request, page_number, paginate, render_page_or_fragment

PAGE_SIZE = 50
SEARCH_MAX = 254
REQUESTS_SHOWN = 20
LEDGER_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 25
PURCHASES_SHOWN = 20
USAGE_SUMMARY_DAYS = 30


@bp.get("/accounts")
def accounts():
    """Accounts by email, API key, request id or Stripe id (one box), and by status."""
    search = request.args.get("q", "").strip()[:SEARCH_MAX]
    status = request.args.get("status", "")
    if status not in ACCOUNT_STATUSES:
        status = ""
    # A whole key is looked up, never echoed: not in the box, nor in the address pushed to the
    # browser's history (which may be synced elsewhere).
    shown = account_search.masked_key(search)
    if shown and not is_fragment_request():
        return redirect(url_for("admin.accounts", q=shown, status=status or None))
    matches = account_search.find(search) if search else account_search.SearchMatches()
    query = select(Account)
    if search:
        query = query.where(account_search.condition(search, matches))
    if status:
        query = query.where(Account.status == status)
    listed = paginate(
        query.order_by(Account.created_at.desc(), Account.id.desc()), page_number(), PAGE_SIZE
    )
    response = render_page_or_fragment(
        "admin/accounts.html",
        "admin/partials/accounts_table.html",
        accounts=listed.items,
        found_by=matches.found_by,
        search=shown or search,
        status=status,
        statuses=ACCOUNT_STATUSES,
        page=listed.page,
        pages=listed.pages,
        total=listed.total,
    )
    if shown:
        response.headers["HX-Push-Url"] = url_for("admin.accounts", q=shown, status=status or None)
    return response


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
        "adjust": CreditAdjustmentForm.blank(),
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


def _ledger_context(account: Account, page: int) -> dict:
    listed = paginate(
        select(LedgerEntry)
        .where(LedgerEntry.account_id == account.id)
        .order_by(LedgerEntry.id.desc()),
        page,
        LEDGER_PAGE_SIZE,
    )
    return {
        "ledger": listed,
        "adjustments": adjustment_service.adjustments_of(
            account.id, [entry.id for entry in listed.items]
        ),
    }


def _audit_context(account: Account, page: int) -> dict:
    return {
        "audit": paginate(
            audit_service.audit_query(audit_service.AuditFilters(account_id=account.id)),
            page,
            AUDIT_PAGE_SIZE,
        ),
        "status_history": audit_service.status_history(account.id),
    }


def _usage_summary(account_id: int) -> dict:
    """Requests and spend of the last 30 days, by model (a range of the account's usage records,
    found through their account index)."""
    since = utcnow() - timedelta(days=USAGE_SUMMARY_DAYS)
    rows = db.session.execute(
        select(
            UsageRecord.model_id,
            func.count(),
            func.sum(UsageRecord.input_tokens + UsageRecord.cache_read_tokens),
            func.sum(UsageRecord.output_tokens),
            func.sum(UsageRecord.cost_nanocredits),
        )
        .where(UsageRecord.account_id == account_id, UsageRecord.created_at >= since)
        .group_by(UsageRecord.model_id)
        .order_by(func.sum(UsageRecord.cost_nanocredits).desc(), UsageRecord.model_id)
    ).all()
    by_model = [
        {
            "model_id": model_id,
            "requests": requests,
            "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0),
            "cost_nanocredits": int(cost or 0),
        }
        for model_id, requests, input_tokens, output_tokens, cost in rows
    ]
    return {
        "days": USAGE_SUMMARY_DAYS,
        "by_model": by_model,
        "requests": sum(row["requests"] for row in by_model),
        "cost_nanocredits": sum(row["cost_nanocredits"] for row in by_model),
    }


def _money_context(account: Account) -> dict:
    purchases = db.session.scalars(
        select(Purchase)
        .where(Purchase.account_id == account.id)
        .order_by(Purchase.created_at.desc(), Purchase.id.desc())
        .limit(PURCHASES_SHOWN)
    ).all()
    return {
        "purchases": purchases,
        "purchases_total": db.session.scalar(
            select(func.count()).select_from(Purchase).where(Purchase.account_id == account.id)
        ),
        "refund_parts": db.session.execute(
            select(RefundPart, Purchase.stripe_payment_intent_id)
            .join(Purchase, Purchase.id == RefundPart.purchase_id)
            .where(Purchase.account_id == account.id)
            .order_by(RefundPart.created_at.desc(), RefundPart.id.desc())
            .limit(PURCHASES_SHOWN)
        ).all(),
        "usage_summary": _usage_summary(account.id),
    }


def _account_context(
    account: Account,
    forms: dict | None = None,
    *,
    notice: str | None = None,
    refusal: str | None = None,
    adjust_notice: str | None = None,
    ledger_page: int = 1,
    audit_page: int = 1,
) -> dict:
    """Everything the account page shows; its fragments are parts of the same context."""
    return {
        "account": account,
        "keys": db.session.scalars(
            select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.created_at.desc())
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
        "adjust_notice": adjust_notice,
        "now": utcnow(),
        **_ending_context(account),
        **_money_context(account),
        **_ledger_context(account, ledger_page),
        **_audit_context(account, audit_page),
    }


def _render_account(
    account: Account,
    forms: dict | None = None,
    status: int = 200,
    notice: str | None = None,
    refusal: str | None = None,
):
    # To htmx: the section that was acted on, and (out of band) the credit, keys, history and
    # audit it may change.
    return render_page_or_fragment(
        "admin/account.html",
        "admin/partials/account_update.html",
        status_code=status,
        oob=True,
        **_account_context(account, forms, notice=notice, refusal=refusal),
    )


def _account_answer(account: Account, message: str):
    if is_fragment_request():
        return _render_account(account, notice=message)
    flash(message, "success")
    return redirect(url_for("admin.account", account_id=account.id))


@bp.get("/accounts/<int:account_id>")
def account(account_id: int):
    return _render_account(_account_or_404(account_id))


@bp.get("/accounts/<int:account_id>/ledger")
def account_ledger(account_id: int):
    """A page of the account's ledger: the section to htmx, the whole account page otherwise."""
    account = _account_or_404(account_id)
    return render_page_or_fragment(
        "admin/account.html",
        "admin/partials/account_ledger.html",
        **_account_context(account, ledger_page=page_number()),
    )


@bp.get("/accounts/<int:account_id>/audit")
def account_audit(account_id: int):
    """A page of what was done to the account (its own audit log)."""
    account = _account_or_404(account_id)
    return render_page_or_fragment(
        "admin/account.html",
        "admin/partials/account_audit.html",
        **_account_context(account, audit_page=page_number()),
    )


@bp.post("/accounts/<int:account_id>/credit")
def adjust_credit(account_id: int):
    """Grant or debit credit by hand, audited, once per form (its key): a second post of the
    same form answers that it was already recorded and posts nothing."""
    account = _account_or_404(account_id)
    form = CreditAdjustmentForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return _render_adjustment(account, form, 400)
    try:
        outcome = adjustment_service.adjust_credit(
            account,
            direction=form.direction.data,
            amount_nanocredits=form.amount_nanocredits,
            reason=form.reason.data,
            note=form.note.data,
            note_visible=form.note_visible.data,
            form_key=form.form_key.data,
            actor_id=current_user.id,
        )
    except AccountError as exc:
        db.session.rollback()
        for name, message in exc.errors.items():
            field = form._fields.get(name)
            (field.errors if field is not None else form.form_errors).append(message)
        return _render_adjustment(_account_or_404(account_id), form, 409)
    db.session.commit()
    adjustment = outcome.adjustment
    amount = display_credits(abs(adjustment.amount_nanocredits))
    if not outcome.created:
        message = (
            f"Already recorded: this form's {amount} credit "
            f"{'grant' if adjustment.amount_nanocredits > 0 else 'debit'} was posted once "
            f"(ledger entry #{adjustment.ledger_entry_id}); nothing more was posted."
        )
    elif adjustment.amount_nanocredits > 0:
        message = f"Granted {amount} credits to {account.email}."
    else:
        message = f"Debited {amount} credits from {account.email}."
    if is_fragment_request():
        return _render_adjustment(account, CreditAdjustmentForm.blank(), 200, message)
    flash(message, "success")
    return redirect(url_for("admin.account", account_id=account.id), 303)


def _render_adjustment(account: Account, form, status: int, notice: str | None = None):
    return render_page_or_fragment(
        "admin/account.html",
        "admin/partials/account_adjust_update.html",
        status_code=status,
        oob=True,
        **_account_context(account, {"adjust": form}, adjust_notice=notice),
    )


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


# The audit log.

DATE_INPUT = "Enter a date like 2026-01-31."


def _audit_log_filters(args) -> tuple[audit_service.AuditFilters, dict, dict[str, str]]:
    """The log's filters from the query string: (filters, the values to show in the form, the
    errors by field). Each filter is kept in the address, so a filtered page can be shared."""
    values = {
        name: args.get(name, "").strip()[:SEARCH_MAX]
        for name in ("admin", "action", "account", "since", "until")
    }
    errors: dict[str, str] = {}
    filters: dict = {}
    admin = values["admin"]
    if admin == audit_service.SYSTEM_ACTOR:
        filters["system_only"] = True
    elif admin:
        if admin.isdigit():
            filters["actor_id"] = int(admin)
        else:
            errors["admin"] = "Choose an admin from the list."
    if values["action"]:
        filters["action"] = values["action"]
    account_text = values["account"].removeprefix("#")
    if account_text:
        if account_text.isdigit():
            filters["account_id"] = int(account_text)
        else:
            found = account_service.account_by_email(account_text)
            if found is None:
                errors["account"] = "No account has this email address; enter it whole, or #id."
            else:
                filters["account_id"] = found.id
    for name in ("since", "until"):
        if values[name]:
            try:
                filters[name] = date.fromisoformat(values[name])
            except ValueError:
                errors[name] = DATE_INPUT
    if "since" in filters and "until" in filters and filters["until"] < filters["since"]:
        errors["until"] = "The end date is before the start date."
    return audit_service.AuditFilters(**filters), values, errors


@bp.get("/audit")
def audit_log():
    """Every admin action (and the system's acts on accounts), newest first, filtered by admin,
    action, account and date range."""
    filters, values, errors = _audit_log_filters(request.args)
    listed = None
    if not errors:
        listed = paginate(audit_service.audit_query(filters), page_number(), PAGE_SIZE)
    return render_page_or_fragment(
        "admin/audit.html",
        "admin/partials/audit_table.html",
        status_code=400 if errors else 200,
        entries=listed,
        values=values,
        errors=errors,
        actors=audit_service.actors(),
        actions=audit_service.recorded_actions(),
        system_actor=audit_service.SYSTEM_ACTOR,
        filter_args={name: value for name, value in values.items() if value},
    )
