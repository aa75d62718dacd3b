"""The signed-in customer's pages: dashboard and API keys."""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db, login_manager
from app.models import ApiKey
from app.models.types import utcnow
from app.portal import bp
from app.portal.forms import CreateKeyForm, EmptyForm
from app.services import keys as key_service
from app.services import refunds
from app.services.accounts import needs_terms_acceptance
from app.services.catalog import enabled_models
from app.services.money import AmountError, credits_to_nanos

# Open to a customer who has not accepted changed Terms: the way out (closing the account, with
# its refund) and following a request already made.
OPEN_BEFORE_CHANGED_TERMS = frozenset(
    {
        "portal.close_account",
        "portal.request_closure",
        "portal.refund_request",
        "portal.refund_request_status",
    }
)


@bp.before_request
def require_login():
    """Every portal page needs a signed-in account that accepted the Terms in force.

    A fragment asked for after the session ended (a closure carried out, a sign-out elsewhere)
    reloads its page, which then goes to sign-in, rather than swap the sign-in page into a part.
    """
    if not current_user.is_authenticated:
        if request.htmx:
            return "", 401, {"HX-Refresh": "true"}
        return login_manager.unauthorized()
    if request.endpoint in OPEN_BEFORE_CHANGED_TERMS:
        return None
    if needs_terms_acceptance(current_user):
        # Back to this page once accepted; a fragment or a form post is not a page to return to.
        here = (
            request.full_path.rstrip("?") if request.method == "GET" and not request.htmx else None
        )
        return redirect(url_for("auth.accept_terms", next=here))
    return None


def _base_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")


def _account_keys() -> list[ApiKey]:
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.account_id == current_user.id)
            .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
        )
    )


@bp.get("/dashboard")
def dashboard():
    from app.portal.activity import low_balance_alert_form
    from app.services.activity import spend as account_spend
    from app.services.money import nanos_to_credits

    now = utcnow()
    spend = account_spend(current_user.id, now)
    return render_template(
        "portal/dashboard.html",
        keys=_account_keys(),
        base_url=_base_url(),
        now=now,
        example_model="gpt-4o-mini",
        closing=refunds.closing_request(current_user.id),
        spend=spend,
        # The 7-day chart's data, read by static/js/dashboard.js from a data attribute (CSP).
        spend_chart={
            "labels": [f"{day:%a} {day.day}" for day, _ in spend.days],
            "credits": [nanos_to_credits(amount) for _, amount in spend.days],
        },
        alert_form=low_balance_alert_form(),
    )


def _key_form(*, blank: bool = False) -> CreateKeyForm:
    """The create-key form: bound to the posted data, or blank to show after a key was created."""
    form = CreateKeyForm(formdata=None) if blank else CreateKeyForm()
    form.allowed_models.choices = [(m.model_id, m.model_id) for m in enabled_models()]
    return form


def _render_keys(form: CreateKeyForm, new_key: str | None = None, status: int = 200):
    context = {
        "form": form,
        "keys": _account_keys(),
        "new_key": new_key,
        "now": utcnow(),
        "revoke_form": EmptyForm(),
    }
    template = "portal/partials/keys_panel.html" if request.htmx else "portal/keys.html"
    return render_template(template, **context), status


@bp.get("/keys")
def keys():
    return _render_keys(_key_form())


@bp.post("/keys")
def create_key():
    form = _key_form()
    if not current_user.is_active_account:
        form.form_errors.append("Your account is suspended: it cannot create API keys.")
        return _render_keys(form, status=403)
    if not form.validate_on_submit():
        return _render_keys(form, status=400)
    limit = None
    if form.limit.data:
        try:
            limit = credits_to_nanos(form.limit.data)
        except AmountError:
            form.limit.errors.append("Enter the limit in credits, like 25 or 12.50.")
            return _render_keys(form, status=400)
    expires_at = None
    if form.expires_on.data:
        expires_at = datetime.combine(form.expires_on.data, time.max, tzinfo=UTC)
    try:
        _, plaintext = key_service.create_key(
            current_user,
            name=form.name.data,
            limit_nanocredits=limit,
            allowed_models=form.allowed_models.data or None,
            expires_at=expires_at,
        )
    except key_service.KeyRequestError as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _render_keys(form, status=400)
    db.session.commit()
    return _render_keys(_key_form(blank=True), new_key=plaintext, status=201)


@bp.post("/keys/<int:key_id>/revoke")
def revoke_key(key_id: int):
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    key = key_service.key_of_account(current_user.id, key_id)
    if key is None:
        abort(404)
    key_service.revoke_key(key)
    db.session.commit()
    if not request.htmx:
        # Post/redirect/get: a reload must not post again, and the address stays /keys.
        flash(f"The key “{key.name}” is revoked.", "success")
        return redirect(url_for("portal.keys"))
    return _render_keys(_key_form(blank=True))
