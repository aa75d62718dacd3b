"""Public pages: home, pricing, the API documentation, a page per model, terms; and the load
balancer probes."""

from __future__ import annotations

from flask import current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import text

from app.extensions import db, get_redis
from app.models.catalog import PROVIDERS
from app.proxy.errors import ANTHROPIC, GOOGLE, OPENAI
from app.public import bp, docs
from app.services.catalog import enabled_models, price_table
from app.services.terms import SUPPORT_EMAIL_MARKER, load_terms
from app.web_helpers import is_fragment_request

PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google", "xai": "xAI"}
SEARCH_MAX = 100
DIALECT_LABELS = {OPENAI: "/v1", ANTHROPIC: "/anthropic", GOOGLE: "/gemini"}


@bp.get("/")
def home():
    return render_template("public/home.html", models=enabled_models())


@bp.get("/pricing")
def pricing():
    provider = request.args.get("provider", "")
    if provider not in PROVIDERS:
        provider = ""
    search = request.args.get("q", "")[:SEARCH_MAX]
    models = enabled_models(provider or None, search or None)
    context = {
        "rows": [(model, price_table(model)) for model in models],
        "provider": provider,
        "search": search,
        "providers": PROVIDER_NAMES,
        "margin_bps": current_app.config["MARGIN_BPS"],
    }
    if is_fragment_request():
        return render_template("public/partials/pricing_rows.html", **context)
    return render_template("public/pricing.html", **context)


@bp.get("/docs")
def api_docs():
    limits = docs.limits()
    return render_template(
        "public/docs.html",
        base=docs.base_url(),
        models=docs.example_models(),
        key_var=docs.KEY_VARIABLE,
        placeholder=docs.KEY_PLACEHOLDER,
        gemini_versions=docs.GEMINI_VERSIONS,
        model_prefixes=list(docs.MODEL_PREFIXES),
        error_rows=docs.error_rows(),
        provider_error_rows=docs.provider_error_rows(),
        no_retry_statuses=sorted(docs.NO_RETRY_STATUSES),
        sample_errors=docs.sample_error_bodies(),
        dialect_labels=DIALECT_LABELS,
        limits=limits,
        request_size=docs.byte_size(limits.max_request_bytes),
        unpriceable=docs.unpriceable_features(),
    )


@bp.get("/models/<path:model_id>")
def model_page(model_id: str):
    """A model's limits, every price and an example; a prefixed id (`openai/gpt-4o`) redirects
    to its model's page, and an unknown or disabled model is a 404 (a retired one says when, and
    links its replacement)."""
    model = docs.enabled_model(model_id)
    if model is None:
        canonical = docs.canonical_model_id(model_id)
        if canonical is not None:
            return redirect(url_for("public.model_page", model_id=canonical), 301)
        gone = docs.unavailable_model(model_id)
        if gone is None:
            return render_template(
                "errors/error.html", code=404, message="OneKey offers no such model."
            ), 404
        return render_template("public/model_unavailable.html", model=gone), 404
    thresholds, rows = docs.price_rows(price_table(model), model.provider)
    return render_template(
        "public/model.html",
        model=model,
        thresholds=thresholds,
        price_rows=rows,
        input_kinds=docs.input_kinds(model.model_id),
        routes=docs.model_routes(model),
        prefixed_id=docs.PROVIDER_PREFIXES[model.provider] + model.model_id,
        base=docs.base_url(),
        key_var=docs.KEY_VARIABLE,
        placeholder=docs.KEY_PLACEHOLDER,
    )


@bp.get("/terms")
def terms():
    return render_template(
        "public/terms.html", terms=load_terms(), support_marker=SUPPORT_EMAIL_MARKER
    )


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is for the operator
        checks["database"] = type(exc).__name__
    finally:
        db.session.rollback()
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


@bp.app_template_filter("provider_name")
def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


@bp.app_context_processor
def auth_state():
    return {"signed_in": current_user.is_authenticated}
