"""Buying credits: the amount, the card (Stripe.js), 3-D Secure, waiting for the credit, history."""

from __future__ import annotations

import logging

import stripe
from flask import abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel, Purchase
from app.portal import bp
from app.portal.forms import BuyCreditsForm, ConfirmPaymentForm
from app.portal.refunds import account_requests
from app.services import payments
from app.services.catalog import price_table
from app.services.payments import PaymentOutcome, PurchaseError, display_dollars
from app.services.refunds import open_request, refundable_cents_by_purchase
from app.services.stripe_api import PaymentsNotConfigured, stripe_configured

log = logging.getLogger("onekey.credits")
# Models whose prices show what an amount buys, the first enabled one of each provider shown.
EXAMPLE_MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")
UNAVAILABLE = "Card payments are unavailable right now. Nothing was charged; try again shortly."
# One click fills the amount; only those within PURCHASE_MIN_CENTS..PURCHASE_MAX_CENTS are shown.
PRESET_CENTS = (500, 1000, 2500, 5000, 10000)
EXAMPLE_CENTS = 2000


@bp.context_processor
def payments_context() -> dict:
    """Whether this OneKey sells credit by card: without Stripe no page offers to buy."""
    return {"card_payments": stripe_configured()}


def _limits() -> dict[str, int]:
    return {
        "min_cents": current_app.config["PURCHASE_MIN_CENTS"],
        "max_cents": current_app.config["PURCHASE_MAX_CENTS"],
    }


def _what_it_buys(amount_cents: int) -> list[dict]:
    """Millions of input and output tokens the amount buys on a few popular models."""
    rows = []
    models = db.session.scalars(
        select(CatalogModel).where(
            CatalogModel.model_id.in_(EXAMPLE_MODELS), CatalogModel.enabled.is_(True)
        )
    )
    for model in sorted(models, key=lambda m: EXAMPLE_MODELS.index(m.model_id)):
        base = price_table(model).get(0, {})
        if not base.get("input") or not base.get("output"):
            continue
        nanos = payments.cents_to_nanos(amount_cents)
        rows.append(
            {
                "model": model.model_id,
                "input_mtok": nanos / base["input"],
                "output_mtok": nanos / base["output"],
            }
        )
    return rows


def _buys_context(amount_cents: int | None, problem: str | None = None) -> dict:
    """What the "what it buys" section shows: an amount's examples, or (`amount_cents` None)
    the problem with the amount typed."""
    if amount_cents is None:
        return {"examples": [], "buys_dollars": None, "buys_problem": problem}
    return {
        "examples": _what_it_buys(amount_cents),
        "buys_dollars": display_dollars(amount_cents),
        "buys_problem": None,
    }


def _typed_cents(text: str | None) -> int | None:
    try:
        return payments.parse_purchase_amount(text or "", **_limits())
    except PurchaseError:
        return None


def _render_buy(form: BuyCreditsForm, status: int = 200, error: str | None = None):
    limits = _limits()
    configured = stripe_configured()
    return render_template(
        "portal/credits.html",
        form=form,
        error=error,
        configured=configured,
        min_dollars=display_dollars(limits["min_cents"]),
        max_dollars=display_dollars(limits["max_cents"]),
        presets=[
            (payments.plain_dollars(cents), display_dollars(cents).removesuffix(".00"))
            for cents in PRESET_CENTS
            if limits["min_cents"] <= cents <= limits["max_cents"]
        ],
        # Follows the amount typed (htmx); the example amount until one is.
        live_buys=configured and bool(_what_it_buys(EXAMPLE_CENTS)),
        **_buys_context(_typed_cents(form.amount.data) or EXAMPLE_CENTS),
    ), status


@bp.get("/credits")
def credits():
    return _render_buy(BuyCreditsForm(formdata=None))


@bp.get("/credits/what-it-buys")
def what_it_buys():
    """The "what it buys" section for the amount being typed on the credits page (htmx)."""
    if not request.htmx:
        return redirect(url_for("portal.credits"))
    text = request.args.get("amount", "")
    try:
        amount_cents = payments.parse_purchase_amount(text, **_limits())
    except PurchaseError as exc:
        # Nothing typed yet shows the example amount again; a wrong amount says what is wrong.
        context = (
            _buys_context(EXAMPLE_CENTS) if not text.strip() else _buys_context(None, str(exc))
        )
    else:
        context = _buys_context(amount_cents)
    return render_template("portal/partials/what_it_buys.html", live_buys=True, **context)


@bp.post("/credits")
def buy_credits():
    form = BuyCreditsForm()
    if not current_user.is_active_account:
        return _render_buy(
            form, 403, f"Your account is {current_user.status}: it cannot buy credits."
        )
    if not stripe_configured():
        return _render_buy(form, 503, "Card payments are not set up on this OneKey yet.")
    if not form.validate_on_submit():
        return _render_buy(form, 400)
    try:
        amount_cents = payments.parse_purchase_amount(form.amount.data, **_limits())
        purchase = payments.start_purchase(current_user, amount_cents)
    except PurchaseError as exc:
        db.session.rollback()
        form.amount.errors.append(str(exc))
        return _render_buy(form, 400)
    db.session.commit()
    # The SetupIntent is made now, with the purchase recorded first: the payment page follows.
    return _render_purchase(purchase)


def _purchase_or_404(purchase_id: int) -> Purchase:
    """The signed-in account's purchase; another account's looks exactly like a missing one."""
    purchase = db.session.get(Purchase, purchase_id)
    if purchase is None or purchase.account_id != current_user.id:
        abort(404)
    return purchase


def _render_purchase(purchase: Purchase, outcome: PaymentOutcome | None = None, status=200):
    """The payment page in whatever state the purchase is: card form, 3-D Secure, waiting, done."""
    context = {
        "purchase": purchase,
        "amount": display_dollars(purchase.amount_cents),
        **_buys_context(purchase.amount_cents),
        "form": ConfirmPaymentForm(formdata=None),
        "outcome": outcome,
        "error": outcome.message if outcome and outcome.state == "failed" else None,
        "setup_intent": None,
        "publishable_key": current_app.config["STRIPE_PUBLISHABLE_KEY"],
        "stripe_js_url": current_app.config["STRIPE_JS_URL"],
    }
    waiting = outcome is not None and outcome.state in ("processing", "requires_action")
    if purchase.is_retryable and not waiting and current_user.is_active_account:
        try:
            context["setup_intent"] = payments.setup_intent_for(purchase)
            db.session.commit()
        except (stripe.StripeError, PaymentsNotConfigured) as exc:
            db.session.rollback()
            log.warning("payment page for purchase %s: %s", purchase.id, type(exc).__name__)
            context["error"] = UNAVAILABLE
            status = 503
    if context["setup_intent"] or (outcome and outcome.state == "requires_action"):
        g.stripe_page = True  # the CSP then admits Stripe.js
    return render_template("portal/purchase.html", **context), status


@bp.get("/credits/<int:purchase_id>")
def purchase(purchase_id: int):
    purchase = _purchase_or_404(purchase_id)
    if payments.attempt_in_flight(purchase):
        # Reloaded while an attempt is on its way: show where it stands rather than ask again.
        return _pay(purchase, payments.refresh_payment)
    return _render_purchase(purchase)


def _pay(purchase: Purchase, step):
    """Run one payment step (`step(purchase) -> PaymentOutcome`) and show where it leaves us."""
    try:
        outcome = step(purchase)
    except PurchaseError as exc:
        db.session.rollback()
        return _render_purchase(purchase, PaymentOutcome("failed", str(exc)), 409)
    except (stripe.StripeError, PaymentsNotConfigured) as exc:
        db.session.rollback()
        log.warning("payment of purchase %s: %s", purchase.id, type(exc).__name__)
        return _render_purchase(purchase, PaymentOutcome("failed", UNAVAILABLE), 502)
    db.session.commit()
    return _render_purchase(purchase, outcome, 402 if outcome.state == "failed" else 200)


@bp.post("/credits/<int:purchase_id>/confirm")
def confirm_purchase(purchase_id: int):
    purchase = _purchase_or_404(purchase_id)
    form = ConfirmPaymentForm()
    if not form.validate_on_submit():
        abort(400)
    if payments.attempt_in_flight(purchase):
        # A second post while an attempt is under way: its outcome decides what comes next.
        response = _pay(purchase, payments.refresh_payment)
        if payments.attempt_in_flight(purchase):
            return response
    try:
        payments.begin_attempt(purchase, form.payment_method.data)
    except PurchaseError as exc:
        db.session.rollback()
        if not current_user.is_active_account:
            status = 403
        elif not purchase.is_retryable:
            status = 409
        else:
            status = 400  # the card reference was missing or malformed
        return _render_purchase(purchase, PaymentOutcome("failed", str(exc)), status)
    # The attempt number keys the PaymentIntent: it is stored before Stripe is called.
    db.session.commit()
    return _pay(purchase, lambda p: payments.pay_with(p, form.payment_method.data))


@bp.post("/credits/<int:purchase_id>/check")
def check_purchase(purchase_id: int):
    """After 3-D Secure in the page: Stripe is asked again, the page never trusted."""
    purchase = _purchase_or_404(purchase_id)
    if not ConfirmPaymentForm().validate_on_submit():
        abort(400)
    if not purchase.is_retryable:
        return redirect(url_for("portal.purchase", purchase_id=purchase.id), 303)
    return _pay(purchase, payments.refresh_payment)


@bp.get("/credits/<int:purchase_id>/status")
def purchase_status(purchase_id: int):
    """The fragment that polls until the worker has credited the purchase."""
    purchase = _purchase_or_404(purchase_id)
    if not request.htmx:
        return redirect(url_for("portal.purchase", purchase_id=purchase.id))
    return render_template(
        "portal/partials/purchase_status.html",
        purchase=purchase,
        amount=display_dollars(purchase.amount_cents),
    )


@bp.get("/credits/history")
def credits_history():
    purchases = db.session.scalars(
        select(Purchase)
        .where(Purchase.account_id == current_user.id)
        .where((Purchase.attempts > 0) | (Purchase.status != "pending"))
        .order_by(Purchase.created_at.desc(), Purchase.id.desc())
    ).all()
    refundable = refundable_cents_by_purchase(current_user.id)
    return render_template(
        "portal/credits_history.html",
        purchases=purchases,
        refundable=refundable,
        refundable_cents=sum(refundable.values()),
        open_request=open_request(current_user.id),
        account_requests=account_requests(current_user.id),
        dollars=display_dollars,
    )
