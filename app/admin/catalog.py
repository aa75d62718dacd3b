"""Admin pages for the model catalogue: enabling models, margins, sell prices.

The page is one compact row per model (status, key prices, flags); a model's forms load into its
row on demand (HTMX, or `?edit=<pk>` without JavaScript), and each edit answers with that model's
rows again. /pricing and /v1/models read the database on every request; the proxy caches models per
process and its hold statement refuses a copy whose version an edit changed
(app/proxy/catalog_cache.py), so an edit applies from the next request on everywhere.
"""

from __future__ import annotations

from datetime import date

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.admin import bp
from app.admin.forms import MarginForm, ReasonForm, SellPriceForm
from app.extensions import db
from app.models import CatalogModel, ModelPrice
from app.models.catalog import PRICE_CLASSES
from app.services import catalog as catalog_service
from app.services.money import nanos_to_credits
from app.services.pricing import class_label, sell_price
from app.web_helpers import is_fragment_request


def _ordered_prices(model: CatalogModel) -> list[ModelPrice]:
    return sorted(
        model.prices,
        key=lambda p: (p.tier_threshold_tokens, PRICE_CLASSES.index(p.token_class)),
    )


def _price_label(price: ModelPrice) -> str:
    label = f"{price.model.model_id} {class_label(price.token_class, price.model.provider).lower()}"
    if price.tier_threshold_tokens:
        label += f" above {price.tier_threshold_tokens:,} prompt tokens"
    return label


def _catalogue_sell_price(price: ModelPrice) -> int:
    """What the catalogue would sell this price at: list × the model's margin."""
    margin = catalog_service.margin_for(price.model, current_app.config["MARGIN_BPS"])
    return sell_price(price.list_price_nanos_per_mtok, margin)


def _base_price(model: CatalogModel, token_class: str) -> ModelPrice | None:
    return next(
        (p for p in model.prices if p.tier_threshold_tokens == 0 and p.token_class == token_class),
        None,
    )


def model_flags(model: CatalogModel, today: date | None = None) -> list[tuple[str, str, str]]:
    """What an admin should notice about a model: (kind, short text, longer explanation)."""
    today = today or date.today()
    flags = []
    raised = [p for p in model.prices if p.raised_at is not None]
    if raised:
        flags.append(
            (
                "warning",
                f"{len(raised)} raised by sync",
                "The list price rose above the sell price an admin had set; the sync raised it to "
                "list × margin. Set a price, or acknowledge the raise.",
            )
        )
    if model.status == "deprecated" and model.retires_on and model.retires_on <= today:
        flags.append(
            (
                "warning",
                "retirement date passed",
                f"The provider retires it on {model.retires_on.isoformat()}; update the bundled "
                "catalogue or disable it.",
            )
        )
    edited = sum(p.admin_edited_at is not None for p in model.prices)
    if edited:
        flags.append(("info", f"{edited} edited", "Sell prices set by an admin, kept by syncs."))
    if model.margin_bps is not None:
        flags.append(("info", f"margin {model.margin_bps} bps", "A margin of its own."))
    return flags


@bp.context_processor
def catalog_helpers() -> dict:
    return {
        "ordered_prices": _ordered_prices,
        "catalogue_sell_price": _catalogue_sell_price,
        "price_label": _price_label,
        "plain_credits": nanos_to_credits,
        "default_margin_bps": current_app.config["MARGIN_BPS"],
        "base_price": _base_price,
        "model_flags": model_flags,
    }


@bp.get("/catalog")
def catalog():
    editing = request.args.get("edit", type=int)
    return render_template("admin/catalog.html", **_catalog_context(editing=editing))


def _catalog_context(**extra) -> dict:
    models = db.session.scalars(
        select(CatalogModel)
        .options(selectinload(CatalogModel.prices))
        .order_by(CatalogModel.provider, CatalogModel.model_id)
    ).all()
    context = {"models": models, "failed": None, "notice": None, "editing": None, **extra}
    context["warnings"] = sum(
        any(kind == "warning" for kind, _, _ in model_flags(m)) for m in models
    )
    return context


def _model_rows(model: CatalogModel, *, expanded: bool, status: int = 200, **extra):
    return render_template(
        "admin/partials/catalog_model.html",
        model=model,
        expanded=expanded,
        failed=extra.get("failed"),
        notice=extra.get("notice"),
    ), status


@bp.get("/catalog/models/<int:model_pk>")
def catalog_model_edit(model_pk: int):
    """A model's rows with its forms open (HTMX); without JavaScript, the page opened at it."""
    model = _model_or_404(model_pk, lock=False)
    if not is_fragment_request():
        return redirect(
            url_for("admin.catalog", edit=model.id, _anchor=f"catalog-model-{model.id}")
        )
    return _model_rows(model, expanded=True)


@bp.get("/catalog/models/<int:model_pk>/row")
def catalog_model_row(model_pk: int):
    """A model's summary row alone (closing its forms)."""
    model = _model_or_404(model_pk, lock=False)
    if not is_fragment_request():
        return redirect(url_for("admin.catalog", _anchor=f"catalog-model-{model.id}"))
    return _model_rows(model, expanded=False)


def _answer(model: CatalogModel, status: int, message: str | None = None, failed=None):
    """The model's rows, forms open (HTMX); else a redirect with a flash to the page opened at the
    model, or that page with the refused form and its errors."""
    category = "success" if status == 200 else "error"
    if is_fragment_request():
        notice = (category, message) if message else None
        return _model_rows(model, expanded=True, status=status, failed=failed, notice=notice)
    if message:
        flash(message, category)
    if status == 200:
        return redirect(
            url_for("admin.catalog", edit=model.id, _anchor=f"catalog-model-{model.id}")
        )
    context = _catalog_context(failed=failed, editing=model.id)
    return render_template("admin/catalog.html", **context), status


def _apply(model: CatalogModel, form: ReasonForm, spot: str, change, done: str):
    """Validate the form, make the change and commit; on bad input nothing is written."""
    failed = {"spot": spot, "form": form}
    if not form.validate_on_submit():
        db.session.rollback()
        return _answer(model, 400, failed=failed)
    try:
        change()
    except catalog_service.CatalogError as exc:
        db.session.rollback()
        status = 409 if isinstance(exc, catalog_service.CatalogConflict) else 400
        field = getattr(form, exc.field, None)
        if field is None:
            return _answer(model, status, str(exc), failed=failed)
        field.errors = [*field.errors, str(exc)]
        return _answer(model, status, failed=failed)
    db.session.commit()
    return _answer(model, 200, done)


def _model_or_404(model_pk: int, *, lock: bool = True) -> CatalogModel:
    model = db.session.get(CatalogModel, model_pk, with_for_update=lock)
    if model is None:
        abort(404)
    return model


def _price_or_404(price_id: int) -> ModelPrice:
    price = db.session.get(ModelPrice, price_id, with_for_update=True)
    if price is None:
        abort(404)
    return price


def _set_enabled(model_pk: int, enabled: bool):
    model = _model_or_404(model_pk)
    form = ReasonForm()
    return _apply(
        model,
        form,
        f"enabled-{model.id}",
        lambda: catalog_service.set_model_enabled(
            model, enabled, actor_id=current_user.id, reason=form.reason.data
        ),
        f"{model.model_id} is {'enabled' if enabled else 'disabled'}.",
    )


@bp.post("/catalog/models/<int:model_pk>/enable")
def enable_model(model_pk: int):
    return _set_enabled(model_pk, True)


@bp.post("/catalog/models/<int:model_pk>/disable")
def disable_model(model_pk: int):
    return _set_enabled(model_pk, False)


@bp.post("/catalog/models/<int:model_pk>/margin")
def set_margin(model_pk: int):
    model = _model_or_404(model_pk)
    form = MarginForm()
    return _apply(
        model,
        form,
        f"margin-{model.id}",
        lambda: catalog_service.set_model_margin(
            model, form.margin_bps_value, actor_id=current_user.id, reason=form.reason.data
        ),
        f"The margin of {model.model_id} is set; its unedited prices follow it.",
    )


@bp.post("/catalog/prices/<int:price_id>/sell-price")
def set_sell_price(price_id: int):
    price = _price_or_404(price_id)
    form = SellPriceForm()
    return _apply(
        price.model,
        form,
        f"price-{price.id}",
        lambda: catalog_service.set_sell_price(
            price, form.sell_nanos_per_mtok, actor_id=current_user.id, reason=form.reason.data
        ),
        f"{_price_label(price)}: the sell price is set and kept by catalogue syncs.",
    )


@bp.post("/catalog/prices/<int:price_id>/reset")
def reset_price(price_id: int):
    price = _price_or_404(price_id)
    form = ReasonForm()
    return _apply(
        price.model,
        form,
        f"reset-{price.id}",
        lambda: catalog_service.reset_price_to_catalogue(
            price, actor_id=current_user.id, reason=form.reason.data
        ),
        f"{_price_label(price)}: back to the catalogue price.",
    )


@bp.post("/catalog/prices/<int:price_id>/acknowledge")
def acknowledge_raise(price_id: int):
    price = _price_or_404(price_id)
    form = ReasonForm()
    return _apply(
        price.model,
        form,
        f"acknowledge-{price.id}",
        lambda: catalog_service.acknowledge_raised_price(
            price, actor_id=current_user.id, reason=form.reason.data
        ),
        f"{_price_label(price)}: the raised price is acknowledged.",
    )
