"""The customer's activity (their ledger, usage by UTC day, a running balance), purchase receipts,
and the low-balance email's threshold."""

from __future__ import annotations

from datetime import date

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import Length

from app.extensions import db
from app.models import LedgerEntry, Purchase, RefundPart
from app.portal import bp
from app.portal.credits import _purchase_or_404
from app.services import activity as activity_service
from app.services import alerts
from app.services.money import nanos_to_credits
from app.services.payments import display_dollars
from app.web_helpers import is_fragment_request


class LowBalanceAlertForm(FlaskForm):
    threshold = StringField(
        "Email me when my balance falls below (credits)",
        validators=[Length(max=24)],
        filters=[lambda value: value.strip() if value else value],
    )


def read_one_snapshot() -> None:
    """Read the rest of the request in one snapshot of the database, so sums and lines agree.

    PostgreSQL: a REPEATABLE READ transaction (the one Flask-Login began is read-only and ended
    here). SQLite: the request's transaction began with BEGIN IMMEDIATE, so no other writer can
    commit while it lasts.
    """
    if db.engine.dialect.name != "postgresql":
        return
    db.session.rollback()
    db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


@bp.get("/activity")
def activity():
    """Every movement of the account's credit with the balance after it; usage one line per UTC
    day. "Older" pages come in by HTMX (one link without JavaScript)."""
    try:
        before = date.fromisoformat(request.args["before"]) if request.args.get("before") else None
    except ValueError:
        message = "The page asked for is not a date (YYYY-MM-DD)."
        return render_template("errors/error.html", code=400, message=message), 400
    account_id = current_user.id
    read_one_snapshot()
    page = activity_service.activity_page(account_id, before)
    context = {"page": page, "before": before, "dollars": display_dollars}
    if is_fragment_request():
        return render_template("portal/partials/activity_rows.html", **context)
    return render_template("portal/activity.html", **context)


def _receipt_refunds(purchase: Purchase) -> tuple[list[dict], int]:
    """The refunds of the purchase that OneKey made ([{"at", "cents", "reference"}]), and the
    cents refunded besides them (a refund made in Stripe directly, reported by its webhook)."""
    refund_ids = [
        refund_id
        for refund_id in db.session.scalars(
            select(RefundPart.stripe_refund_id).where(
                RefundPart.purchase_id == purchase.id, RefundPart.stripe_refund_id.is_not(None)
            )
        )
    ]
    debits = []
    if refund_ids:
        debits = db.session.execute(
            select(LedgerEntry.created_at, LedgerEntry.amount_nanocredits, LedgerEntry.reference_id)
            .where(
                LedgerEntry.account_id == purchase.account_id,
                LedgerEntry.kind == "refund",
                LedgerEntry.reference_id.in_(refund_ids),
            )
            .order_by(LedgerEntry.created_at, LedgerEntry.id)
        ).all()
    # A refund debits whole cents: $1 = 1 credit = 10^9 nanocredits.
    listed = [
        {"at": at, "cents": -amount // 10_000_000, "reference": reference}
        for at, amount, reference in debits
    ]
    return listed, max(purchase.refunded_cents - sum(r["cents"] for r in listed), 0)


@bp.get("/credits/<int:purchase_id>/receipt")
def receipt(purchase_id: int):
    """A printable receipt of a paid purchase; an unpaid one has none (404)."""
    purchase = _purchase_or_404(purchase_id)
    if purchase.status != "succeeded" or not purchase.stripe_payment_intent_id:
        abort(404)
    credited = db.session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.account_id == purchase.account_id,
            LedgerEntry.kind == "purchase",
            LedgerEntry.idempotency_key == purchase.stripe_payment_intent_id,
        )
    )
    refunds, other_refunded_cents = _receipt_refunds(purchase)
    return render_template(
        "portal/receipt.html",
        purchase=purchase,
        credited=credited,
        refunds=refunds,
        other_refunded_cents=other_refunded_cents,
        net_cents=purchase.amount_cents - purchase.refunded_cents,
        dollars=display_dollars,
        operator_url=current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/"),
    )


def low_balance_alert_form() -> LowBalanceAlertForm:
    """The alert's form, showing the signed-in account's threshold (blank when it is off)."""
    form = LowBalanceAlertForm(formdata=None)
    threshold = current_user.low_balance_threshold_nanocredits
    form.threshold.data = nanos_to_credits(threshold) if threshold is not None else ""
    return form


def _render_low_balance_alert(form: LowBalanceAlertForm, saved: str | None = None):
    """The alert's panel, as the dashboard includes it."""
    return render_template("portal/partials/low_balance_alert.html", alert_form=form, saved=saved)


@bp.post("/dashboard/low-balance-alert")
def set_low_balance_alert():
    form = LowBalanceAlertForm()
    if not form.validate_on_submit():
        abort(400)
    turning_off = request.form.get("action") == "off"
    try:
        threshold = None if turning_off else alerts.parse_threshold(form.threshold.data)
    except alerts.ThresholdError as exc:
        if not request.htmx:
            flash(str(exc), "error")
            return redirect(url_for("portal.dashboard", _anchor="low-balance-alert"), 303)
        form.threshold.errors.append(str(exc))
        return _render_low_balance_alert(form), 400
    alerts.set_threshold(current_user.id, threshold)
    db.session.commit()
    saved = (
        "The low-balance email is off."
        if threshold is None
        else "Saved: we will email you when your balance falls below it."
    )
    if not request.htmx:
        flash(saved, "success")
        return redirect(url_for("portal.dashboard", _anchor="low-balance-alert"), 303)
    return _render_low_balance_alert(low_balance_alert_form(), saved)
