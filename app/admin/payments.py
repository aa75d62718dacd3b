"""Admin pages for money from Stripe: purchases, webhook events, flags, reconciliation."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select

from app.admin import bp
from app.admin.forms import ReasonForm
from app.extensions import db
from app.models import Account, Purchase, ReconciliationRun, StripeEvent
from app.models.purchases import PURCHASE_STATUSES
from app.services import accounts as account_service
from app.services import payments as payment_service
from app.services.payments import display_dollars
from app.tasks import stripe_events as stripe_tasks
from app.web_helpers import is_fragment_request, page_number, paginate, render_page_or_fragment

PAGE_SIZE = 50
FLAGGED_LIMIT = 200
RECONCILIATION_RUNS_SHOWN = 10


@bp.context_processor
def money_helpers() -> dict:
    return {"dollars": display_dollars}


# Purchases.


@bp.get("/purchases")
def purchases():
    status = request.args.get("status", "")
    if status not in PURCHASE_STATUSES:
        status = ""
    query = select(Purchase, Account.email).join(Account, Account.id == Purchase.account_id)
    if status:
        query = query.where(Purchase.status == status)
    listed = paginate(
        query.order_by(Purchase.created_at.desc(), Purchase.id.desc()), page_number(), PAGE_SIZE
    )
    return render_page_or_fragment(
        "admin/purchases.html",
        "admin/partials/purchases_table.html",
        purchases=listed.items,
        status=status,
        statuses=PURCHASE_STATUSES,
        page=listed.page,
        pages=listed.pages,
        total=listed.total,
    )


# Webhook events.


def _needs_attention():
    return or_(StripeEvent.processed_at.is_(None), StripeEvent.error.is_not(None))


def _webhooks_context(problems: bool, page: int) -> dict:
    query = select(StripeEvent)
    if problems:
        query = query.where(_needs_attention())
    listed = paginate(
        query.order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc()), page, PAGE_SIZE
    )
    return {
        "events": listed.items,
        "problems": problems,
        "page": listed.page,
        "pages": listed.pages,
        "total": listed.total,
    }


@bp.get("/webhooks")
def webhooks():
    return render_page_or_fragment(
        "admin/webhooks.html",
        "admin/partials/webhooks_table.html",
        **_webhooks_context(request.args.get("problems", "") == "1", page_number()),
    )


def _webhook_answer(event: StripeEvent, message: str, category: str, status: int = 200):
    if is_fragment_request():
        return render_template(
            "admin/partials/webhook_row.html", event=event, notice=(category, message)
        ), status
    flash(message, category)
    if status == 200:
        return redirect(url_for("admin.webhooks"))
    return render_template("admin/webhooks.html", **_webhooks_context(False, 1)), status


@bp.post("/webhooks/<event_id>/retry")
def retry_webhook(event_id: str):
    """Queue an event again. Only one that failed or never ran: the handlers credit once per
    ledger key whatever happens, and a cleanly processed event has nothing left to do."""
    event = db.session.scalar(
        select(StripeEvent).where(StripeEvent.id == event_id).with_for_update()
    )
    if event is None:
        abort(404)
    if event.processed_at is not None and event.error is None:
        db.session.rollback()
        return _webhook_answer(
            event,
            f"{event.id} was processed without error; there is nothing to retry.",
            "error",
            409,
        )
    payment_service.requeue_event(event, actor_id=current_user.id)
    db.session.commit()
    stripe_tasks.enqueue_stripe_event(event.id)
    return _webhook_answer(event, f"{event.id} is queued again.", "success")


# Flags.


def _flagged_context(**extra) -> dict:
    accounts = db.session.scalars(
        select(Account)
        .where(Account.flagged_reason.is_not(None))
        .order_by(Account.id.desc())
        .limit(FLAGGED_LIMIT)
    ).all()
    purchases = db.session.execute(
        select(Purchase, Account.email)
        .join(Account, Account.id == Purchase.account_id)
        .where(Purchase.status == "flagged")
        .order_by(Purchase.created_at.desc(), Purchase.id.desc())
        .limit(FLAGGED_LIMIT)
    ).all()
    return {
        "accounts": accounts,
        "purchases": purchases,
        "form": ReasonForm(formdata=None),
        "failed_id": None,
        "failed_form": None,
        **extra,
    }


@bp.get("/flagged")
def flagged():
    return render_template("admin/flagged.html", **_flagged_context())


def _clear_flag_answer(account: Account, form: ReasonForm, status: int, message: str | None):
    if is_fragment_request():
        return render_template(
            "admin/partials/flagged_account_row.html",
            account=account,
            form=ReasonForm(formdata=None),
            failed_id=account.id if status != 200 else None,
            failed_form=form,
            notice=message,
        ), status
    if status == 200:
        flash(message, "success")
        return redirect(url_for("admin.flagged"))
    if message:
        flash(message, "error")
    context = _flagged_context(failed_id=account.id, failed_form=form)
    return render_template("admin/flagged.html", **context), status


@bp.post("/accounts/<int:account_id>/clear-flag")
def clear_flag(account_id: int):
    account = db.session.get(Account, account_id, with_for_update=True)
    if account is None:
        abort(404)
    form = ReasonForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return _clear_flag_answer(account, form, 400, None)
    if account.flagged_reason is None:
        db.session.rollback()
        return _clear_flag_answer(account, form, 409, f"{account.email} is not flagged.")
    account_service.clear_flag(account, reason=form.reason.data, actor_id=current_user.id)
    db.session.commit()
    return _clear_flag_answer(account, form, 200, f"The flag on {account.email} is cleared.")


# Reconciliation.


def _reconciliation_context(**extra) -> dict:
    runs = db.session.scalars(
        select(ReconciliationRun)
        .order_by(ReconciliationRun.started_at.desc(), ReconciliationRun.id.desc())
        .limit(RECONCILIATION_RUNS_SHOWN)
    ).all()
    actor_ids = {run.actor_id for run in runs if run.actor_id is not None}
    actors = {}
    if actor_ids:
        actors = dict(
            db.session.execute(
                select(Account.id, Account.email).where(Account.id.in_(actor_ids))
            ).all()
        )
    return {
        "runs": runs,
        "actors": actors,
        "notice": None,
        "notice_category": "success",
        "stripe_configured": bool(current_app.config["STRIPE_SECRET_KEY"]),
        **extra,
    }


# Why a run would do nothing, said instead of queueing one (the job itself skips, silently).
RECONCILIATION_SKIPPED = (
    "Reconciliation skipped: STRIPE_SECRET_KEY is not set, so there is no Stripe account to "
    "reconcile with. Nothing was queued."
)


@bp.get("/reconciliation")
def reconciliation():
    return render_template("admin/reconciliation.html", **_reconciliation_context())


@bp.post("/reconciliation/run")
def run_reconciliation():
    if not current_app.config["STRIPE_SECRET_KEY"]:
        return _run_answer(RECONCILIATION_SKIPPED, "warning", 409)
    payment_service.request_reconciliation(actor_id=current_user.id)
    db.session.commit()
    stripe_tasks.enqueue_reconciliation(actor_id=current_user.id)
    return _run_answer("Reconciliation queued.", "success", 200)


def _run_answer(message: str, category: str, status: int):
    if is_fragment_request():
        return render_template(
            "admin/partials/reconciliation_runs.html",
            **_reconciliation_context(notice=message, notice_category=category),
        ), status
    flash(message, category)
    return redirect(url_for("admin.reconciliation"))
