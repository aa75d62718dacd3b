"""The signed-in customer's pages: dashboard and API keys."""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields import SelectChoice

from app.extensions import db, login_manager
from app.models import ApiKey
from app.models.types import utcnow
from app.portal import bp
from app.portal.forms import CreateKeyForm, EditKeyForm, EmptyForm
from app.services import keys as key_service
from app.services import refunds
from app.services.accounts import needs_terms_acceptance
from app.services.catalog import enabled_models
from app.services.money import AmountError, credits_to_nanos, nanos_to_credits

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


def _model_choices(keep: list[str] | None = None) -> list[SelectChoice]:
    """(model id, name) of every enabled model, and of the models in `keep` (a key's list may
    name a model disabled since, which saving the form must not silently drop)."""
    choices = [SelectChoice(m.model_id, m.name) for m in enabled_models()]
    extra = sorted(set(keep or ()) - {choice.value for choice in choices})
    return choices + [SelectChoice(model_id, "not available now") for model_id in extra]


def _key_form(*, blank: bool = False) -> CreateKeyForm:
    """The create-key form: bound to the posted data, or blank to show after a key was created."""
    form = CreateKeyForm(formdata=None) if blank else CreateKeyForm()
    form.allowed_models.choices = _model_choices()
    return form


def _edit_form(key: ApiKey, *, posted: bool) -> EditKeyForm:
    """The edit form of one key: bound to the posted data, or filled in from the key."""
    prefix = f"key{key.id}"
    if posted:
        form = EditKeyForm(prefix=prefix)
    else:
        form = EditKeyForm(
            formdata=None,
            prefix=prefix,
            name=key.name,
            limit=None
            if key.limit_nanocredits is None
            else nanos_to_credits(key.limit_nanocredits),
            limit_reset=key.limit_reset or "",
            allowed_models=key.allowed_models or [],
            expires_on=key.expires_at.date() if key.expires_at else None,
        )
    form.allowed_models.choices = _model_choices(key.allowed_models)
    return form


def _render_keys(
    form: CreateKeyForm,
    new_key: str | None = None,
    status: int = 200,
    *,
    editing: ApiKey | None = None,
    edit_form: EditKeyForm | None = None,
):
    context = {
        "form": form,
        "keys": _account_keys(),
        "new_key": new_key,
        "now": utcnow(),
        "revoke_form": EmptyForm(),
        "editing_id": editing.id if editing is not None else None,
        "edit_form": edit_form,
    }
    template = "portal/partials/keys_panel.html" if request.htmx else "portal/keys.html"
    return render_template(template, **context), status


def _render_key_row(
    key: ApiKey,
    *,
    edit_form: EditKeyForm | None = None,
    row_error: str | None = None,
    status: int = 200,
):
    """One key's row of the table (HTMX): as shown (with `row_error` under its buttons), or with
    its edit form open."""
    return render_template(
        "portal/partials/key_row.html",
        key=key,
        now=utcnow(),
        edit_form=edit_form,
        row_error=row_error,
    ), status


def _parse_key_fields(form) -> dict | None:
    """The service's arguments from a validated key form; None (errors on the form) when the
    limit is not an amount."""
    limit = None
    if form.limit.data:
        try:
            limit = credits_to_nanos(form.limit.data)
        except AmountError:
            form.limit.errors.append("Enter the limit in credits, like 25 or 12.50.")
            return None
    expires_at = None
    if form.expires_on.data:
        expires_at = datetime.combine(form.expires_on.data, time.max, tzinfo=UTC)
    return {
        "name": form.name.data,
        "limit_nanocredits": limit,
        "limit_reset": form.limit_reset.data or None,
        "allowed_models": form.allowed_models.data or None,
        "expires_at": expires_at,
    }


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
    fields = _parse_key_fields(form)
    if fields is None:
        return _render_keys(form, status=400)
    try:
        _, plaintext = key_service.create_key(current_user, **fields)
    except key_service.KeyRequestError as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _render_keys(form, status=400)
    db.session.commit()
    return _render_keys(_key_form(blank=True), new_key=plaintext, status=201)


def _own_key(key_id: int) -> ApiKey:
    """The signed-in account's key; a plain 404 for anyone else's (never a hint it exists)."""
    key = key_service.key_of_account(current_user.id, key_id)
    if key is None:
        abort(404)
    return key


def _edit_response(key: ApiKey, form: EditKeyForm, status: int):
    if request.htmx:
        return _render_key_row(key, edit_form=form, status=status)
    return _render_keys(_key_form(), status=status, editing=key, edit_form=form)


@bp.get("/keys/<int:key_id>")
def key_row(key_id: int):
    """The key's row as shown (HTMX: what Cancel puts back); a page visit goes to the keys."""
    key = _own_key(key_id)
    if not request.htmx:
        return redirect(url_for("portal.keys"))
    return _render_key_row(key)


def _cannot_change_keys() -> str | None:
    """Why the signed-in account may not change its keys, or None when it may."""
    if current_user.is_active_account:
        return None
    return f"Your account is {current_user.status}: it cannot change API keys."


@bp.get("/keys/<int:key_id>/edit")
def edit_key(key_id: int):
    key = _own_key(key_id)
    form = _edit_form(key, posted=False)
    if refusal := _cannot_change_keys():
        form.form_errors.append(refusal)
        return _edit_response(key, form, 403)
    if key.revoked_at is not None:
        # Nothing to edit: the row as it is (a stale page may still show its Edit button).
        message = "This key is revoked: it cannot be changed."
        if not request.htmx:
            flash(message, "error")
            return redirect(url_for("portal.keys"))
        return _render_key_row(key, row_error=message)
    return _edit_response(key, form, 200)


@bp.post("/keys/<int:key_id>")
def update_key(key_id: int):
    key = _own_key(key_id)
    form = _edit_form(key, posted=True)
    if refusal := _cannot_change_keys():
        form.form_errors.append(refusal)
        return _edit_response(key, form, 403)
    if not form.validate_on_submit():
        return _edit_response(key, form, 400)
    fields = _parse_key_fields(form)
    if fields is None:
        return _edit_response(key, form, 400)
    if key.expires_at is not None and form.expires_on.data == key.expires_at.date():
        fields["expires_at"] = key.expires_at  # the day shown, unchanged: keep its exact time
    try:
        key_service.update_key(key, **fields)
    except key_service.KeyRequestError as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _edit_response(key, form, 400)
    db.session.commit()
    if not request.htmx:
        flash(f"The key “{key.name}” is saved.", "success")
        return redirect(url_for("portal.keys"))
    return _render_key_row(key)


def _set_paused(key_id: int, paused: bool):
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    key = _own_key(key_id)
    if refusal := _cannot_change_keys():
        if not request.htmx:
            flash(refusal, "error")
            return _render_keys(_key_form(), status=403)
        return _render_key_row(key, row_error=refusal, status=403)
    try:
        key_service.set_paused(key, paused)
    except key_service.KeyRequestError as exc:
        db.session.rollback()
        if not request.htmx:
            flash(str(exc), "error")
            return redirect(url_for("portal.keys"))
        return _render_key_row(key, row_error=str(exc), status=400)
    db.session.commit()
    if not request.htmx:
        state = "paused: requests with it are refused" if paused else "working again"
        flash(f"The key “{key.name}” is {state}.", "success")
        return redirect(url_for("portal.keys"))
    return _render_key_row(key)


@bp.post("/keys/<int:key_id>/pause")
def pause_key(key_id: int):
    return _set_paused(key_id, True)


@bp.post("/keys/<int:key_id>/resume")
def resume_key(key_id: int):
    return _set_paused(key_id, False)


@bp.post("/keys/<int:key_id>/revoke")
def revoke_key(key_id: int):
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    key = _own_key(key_id)
    key_service.revoke_key(key)
    db.session.commit()
    if not request.htmx:
        # Post/redirect/get: a reload must not post again, and the address stays /keys.
        flash(f"The key “{key.name}” is revoked.", "success")
        return redirect(url_for("portal.keys"))
    return _render_keys(_key_form(blank=True))
