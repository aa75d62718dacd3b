"""Admin pages: accounts, an account's money and keys, suspension."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from app.admin import bp
from app.admin.forms import ReasonForm
from app.extensions import db
from app.models import Account, ApiKey, AuditLogEntry, LedgerEntry
from app.models.accounts import ACCOUNT_STATUSES
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services.search import contains

PAGE_SIZE = 50
SEARCH_MAX = 254


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


def _render_account(account: Account, form: ReasonForm | None = None, status: int = 200):
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
        "form": form or ReasonForm(formdata=None),
        "now": utcnow(),
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render_template("admin/partials/account_status.html", **context), status
    return render_template("admin/account.html", **context), status


@bp.get("/accounts/<int:account_id>")
def account(account_id: int):
    return _render_account(_account_or_404(account_id))


def _change_status(account_id: int, change, done_message: str):
    account = _account_or_404(account_id)
    form = ReasonForm()
    if not form.validate_on_submit():
        return _render_account(account, form, status=400)
    try:
        change(account, reason=form.reason.data, actor_id=current_user.id)
    except account_service.AccountError as exc:
        db.session.rollback()
        for message in exc.errors.values():
            form.reason.errors = [*form.reason.errors, message]
        return _render_account(_account_or_404(account_id), form, status=409)
    db.session.commit()
    if request.htmx:
        return _render_account(account)
    flash(done_message.format(email=account.email), "success")
    return redirect(url_for("admin.account", account_id=account.id))


@bp.post("/accounts/<int:account_id>/suspend")
def suspend(account_id: int):
    return _change_status(account_id, account_service.suspend, "{email} is suspended.")


@bp.post("/accounts/<int:account_id>/unsuspend")
def unsuspend(account_id: int):
    return _change_status(account_id, account_service.unsuspend, "{email} is active again.")
