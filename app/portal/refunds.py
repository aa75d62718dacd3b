"""Refunds of unused credit (Terms §4), as the customer sees them: the request form, and the
request page that follows a refund, closure or termination until it ends."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models import AccountRequest, Purchase
from app.portal import bp
from app.portal.forms import RefundRequestForm
from app.services import refunds
from app.services.payments import display_dollars, plain_dollars
from app.services.refunds import RefundError
from app.web_helpers import is_fragment_request


def account_requests(account_id: int) -> list[AccountRequest]:
    """The account's refunds, closures and terminations, newest first."""
    return list(
        db.session.scalars(
            select(AccountRequest)
            .where(AccountRequest.account_id == account_id)
            .order_by(AccountRequest.created_at.desc(), AccountRequest.id.desc())
        )
    )


def _request_or_404(request_id: int) -> AccountRequest:
    """The signed-in account's request; another account's looks exactly like a missing one."""
    account_request = db.session.get(AccountRequest, request_id)
    if account_request is None or account_request.account_id != current_user.id:
        abort(404)
    return account_request


def request_context(account_request: AccountRequest) -> dict:
    """What the request page and its polling fragment show: one place for both."""
    return {
        "account_request": account_request,
        "purchase": (
            db.session.get(Purchase, account_request.purchase_id)
            if account_request.purchase_id
            else None
        ),
        "polling": account_request.is_open,
        "dollars": display_dollars,
    }


def _purchase_or_404(purchase_id: int | None) -> Purchase | None:
    if purchase_id is None:
        return None
    purchase = db.session.get(Purchase, purchase_id)
    if purchase is None or purchase.account_id != current_user.id:
        abort(404)
    return purchase


def _refundable_now(purchase: Purchase | None) -> int:
    """Cents refundable now: of the purchase, or in all."""
    refundable = refunds.refundable_cents_by_purchase(current_user.id)
    return refundable.get(purchase.id, 0) if purchase else sum(refundable.values())


def _render_new(form: RefundRequestForm, purchase: Purchase | None, status: int = 200):
    return render_template(
        "portal/refund_new.html",
        form=form,
        purchase=purchase,
        available=_refundable_now(purchase),
        open_request=refunds.open_request(current_user.id),
        dollars=display_dollars,
    ), status


@bp.get("/credits/refunds/new")
def new_refund():
    """The refund form: one purchase's refundable credit (`?purchase=<id>`), or all of it."""
    purchase = _purchase_or_404(request.args.get("purchase", type=int))
    form = RefundRequestForm(formdata=None)
    available = _refundable_now(purchase)
    if available:
        form.amount.data = plain_dollars(available)
    return _render_new(form, purchase)


@bp.post("/credits/refunds/new")
def create_refund():
    purchase = _purchase_or_404(request.args.get("purchase", type=int))
    form = RefundRequestForm()
    if refunds.open_request(current_user.id) is not None:
        # The page then shows the request in progress instead of the form.
        return _render_new(form, purchase, 409)
    if not form.validate_on_submit():
        return _render_new(form, purchase, 400)
    try:
        amount_cents = refunds.parse_refund_cents(form.amount.data)
        account_request = refunds.request_refund(
            current_user,
            amount_cents=amount_cents,
            purchase_id=purchase.id if purchase else None,
            note=form.note.data,
        )
    except RefundError as exc:
        db.session.rollback()
        form.amount.errors.append(str(exc))
        return _render_new(form, purchase, 400)
    db.session.commit()
    flash(
        f"Your request for a refund of {display_dollars(amount_cents)} is sent. "
        "The credit is set aside for it until our team decides.",
        "success",
    )
    return redirect(url_for("portal.refund_request", request_id=account_request.id), 303)


@bp.get("/credits/refunds/<int:request_id>")
def refund_request(request_id: int):
    """A refund, closure or termination of the account, and where it stands (the emailed link)."""
    account_request = _request_or_404(request_id)
    return render_template("portal/refund_request.html", **request_context(account_request))


@bp.get("/credits/refunds/<int:request_id>/status")
def refund_request_status(request_id: int):
    """The fragment that polls while the request is open."""
    account_request = _request_or_404(request_id)
    if not is_fragment_request():
        return redirect(url_for("portal.refund_request", request_id=account_request.id))
    return render_template(
        "portal/partials/refund_request_status.html", **request_context(account_request)
    )
