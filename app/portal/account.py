"""Closing the account (Terms §10): what happens, the request, and where it stands."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models import Purchase
from app.portal import bp
from app.portal.forms import CloseAccountForm
from app.portal.refunds import request_context
from app.services import lifecycle, refunds
from app.services.accounts import AccountError
from app.services.payments import cents_to_nanos, display_dollars, plain_dollars
from app.services.refunds import RefundError


def _refundable_purchases() -> list[tuple[Purchase, int]]:
    """The purchases refundable now, with the cents of each, newest first."""
    refundable = refunds.refundable_cents_by_purchase(current_user.id)
    purchases = db.session.scalars(select(Purchase).where(Purchase.id.in_(refundable))).all()
    by_id = {purchase.id: purchase for purchase in purchases}
    return [(by_id[purchase_id], cents) for purchase_id, cents in refundable.items()]


def _render_close(form: CloseAccountForm, status: int = 200):
    open_request = refunds.open_request(current_user.id)
    context = {"form": form, "open_request": open_request, "dollars": display_dollars}
    if open_request is not None and open_request.kind != "refund":
        context.update(request_context(open_request))
        return render_template("portal/close_account.html", **context), status
    refundable = _refundable_purchases()
    refundable_cents = sum(cents for _, cents in refundable)
    context.update(
        refundable=refundable,
        refundable_cents=refundable_cents,
        # Credit neither spent by the requests in flight nor refunded leaves through a forfeit.
        forfeited_nanocredits=max(
            current_user.available_nanocredits - cents_to_nanos(refundable_cents), 0
        ),
    )
    return render_template("portal/close_account.html", **context), status


@bp.get("/account/close")
def close_account():
    """What closing the account does and the form to ask for it; while a closure is pending,
    where it stands."""
    form = CloseAccountForm(formdata=None)
    refundable_cents = sum(refunds.refundable_cents_by_purchase(current_user.id).values())
    if refundable_cents:
        form.refund.data = plain_dollars(refundable_cents)
    return _render_close(form)


@bp.post("/account/close")
def request_closure():
    form = CloseAccountForm()
    if refunds.open_request(current_user.id) is not None:
        return _render_close(form, 409)
    if not form.validate_on_submit():
        return _render_close(form, 400)
    try:
        refund_cents = refunds.parse_refund_cents(form.refund.data)
    except RefundError as exc:
        form.refund.errors.append(str(exc))
        return _render_close(form, 400)
    try:
        lifecycle.request_closure(
            current_user,
            password=form.password.data,
            confirmed=form.confirm.data,
            refund_cents=refund_cents,
            note=form.note.data,
        )
    except AccountError as exc:
        db.session.rollback()
        for name, message in exc.errors.items():
            field = getattr(form, name, None)
            (field.errors if field is not None else form.form_errors).append(message)
        return _render_close(form, 400)
    except RefundError as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _render_close(form, 400)
    db.session.commit()
    flash(
        "Your request to close the account is sent and its API keys are revoked. "
        "Our team will carry it out; we will email you when it is closed.",
        "success",
    )
    return redirect(url_for("portal.close_account"), 303)
