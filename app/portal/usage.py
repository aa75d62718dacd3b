"""The customer's usage page: a chart of spend per UTC day, the filtered request log with its
totals, a CSV export of it, and each request's detail.

The page, its chart data and its export read one set of filters from the query string, so the
address keeps them (the back button and a copied link show the same thing). One URL serves the
whole page, the filtered view (the form's HTMX requests) and the log alone (its pager's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from flask import Response, abort, jsonify, render_template, request, url_for
from flask_login import current_user

from app.extensions import db
from app.models.catalog import PROVIDERS
from app.models.types import utcnow
from app.models.usage import USAGE_STATUSES
from app.models.usage_rollups import NO_KEY
from app.portal import bp
from app.portal.views import _account_keys
from app.services import usage_stats
from app.services.money import nanos_to_credits
from app.web_helpers import is_fragment_request

PAGE_SIZE = 50
RANGES = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom"}
RANGE_DAYS = {"today": 1, "7d": 7, "30d": 30}
DEFAULT_RANGE = "30d"
PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google", "xai": "xAI"}
STATUS_NAMES = {
    "ok": "ok",
    "partial": "partial",
    "estimated": "estimated",
    "upstream_error": "upstream error",
}
# The chart draws this many stack members; the rest share one "Other" series.
CHART_SERIES = 8
MAX_MODEL_ID = 128


@dataclass
class Filters:
    """The query string's filters, checked: `errors` says what was wrong, in words."""

    range: str = DEFAULT_RANGE
    first_day: date | None = None
    last_day: date | None = None
    key_id: int | None = None
    model_id: str | None = None
    provider: str | None = None
    status: str | None = None
    stack: str = "model"
    before: int | None = None
    after: int | None = None
    errors: list[str] = field(default_factory=list)

    def scope(self, account_id: int) -> usage_stats.UsageScope:
        return usage_stats.UsageScope(
            account_id=account_id,
            first_day=self.first_day,
            last_day=self.last_day,
            key_id=self.key_id,
            model_id=self.model_id,
            provider=self.provider,
            status=self.status,
        )

    def args(self, **changes) -> dict:
        """The query arguments that give these filters (defaults left out), with `changes`."""
        args = {"range": self.range}
        if self.range == "custom":
            args["from"] = self.first_day.isoformat()
            args["to"] = self.last_day.isoformat()
        for name, value in (
            ("key", self.key_id),
            ("model", self.model_id),
            ("provider", self.provider),
            ("status", self.status),
        ):
            if value is not None:
                args[name] = value
        if self.stack != "model":
            args["stack"] = self.stack
        args.update(changes)
        return {name: value for name, value in args.items() if value is not None}


def _day(text: str, label: str, errors: list[str]) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(f"The {label} date must be a date like 2026-12-31.")
        return None


def _int_arg(name: str, label: str, errors: list[str]) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        errors.append(f"{label} must be a number.")
        return None
    return int(text)


def read_filters(key_ids: set[int]) -> Filters:
    """The filters of this request's query string; `key_ids` are the account's own keys."""
    args = request.args
    errors: list[str] = []
    filters = Filters(errors=errors)
    today = utcnow().date()
    filters.range = args.get("range", "").strip() or (
        "custom" if args.get("from") or args.get("to") else DEFAULT_RANGE
    )
    if filters.range not in RANGES:
        errors.append("Choose a range: today, the last 7 or 30 days, or custom dates.")
        filters.range = DEFAULT_RANGE
    if filters.range == "custom":
        first_text, last_text = args.get("from", "").strip(), args.get("to", "").strip()
        if not first_text or not last_text:
            errors.append("A custom range needs a from date and a to date.")
        else:
            filters.first_day = _day(first_text, "from", errors)
            filters.last_day = _day(last_text, "to", errors)
            if filters.first_day and filters.last_day and filters.first_day > filters.last_day:
                errors.append("The from date must not be after the to date.")
    else:
        filters.first_day = today - timedelta(days=RANGE_DAYS[filters.range] - 1)
        filters.last_day = today
    if filters.first_day is None or filters.last_day is None:
        # The form shows what can be shown; nothing is queried while there are errors.
        filters.first_day = filters.first_day or today - timedelta(days=29)
        filters.last_day = filters.last_day or today

    filters.key_id = _int_arg("key", "The key", errors)
    if filters.key_id is not None and filters.key_id not in key_ids:
        errors.append("That key is not one of yours.")
        filters.key_id = None
    model = args.get("model", "").strip()
    if len(model) > MAX_MODEL_ID:
        errors.append("That model id is too long.")
    elif model:
        filters.model_id = model
    provider = args.get("provider", "").strip()
    if provider and provider not in PROVIDERS:
        errors.append("Choose a provider from the list.")
    elif provider:
        filters.provider = provider
    status = args.get("status", "").strip()
    if status and status not in USAGE_STATUSES:
        errors.append("Choose a status from the list.")
    elif status:
        filters.status = status
    stack = args.get("stack", "").strip() or "model"
    if stack not in usage_stats.STACKS:
        errors.append("The chart stacks by model or by key.")
    else:
        filters.stack = stack
    filters.before = _int_arg("before", "The page", errors)
    filters.after = _int_arg("after", "The page", errors)
    return filters


def _key_label(key_names: dict[int, str], key_id: int | None) -> str:
    if key_id is None or key_id == NO_KEY:
        return "No key"
    return key_names.get(key_id, f"Key #{key_id}")


@bp.get("/usage")
def usage():
    """The usage page; its filter form's requests get the view, its pager's the log alone."""
    keys = _account_keys()
    key_names = {key.id: key.name for key in keys}
    filters = read_filters(set(key_names))
    fragment = is_fragment_request()
    log_only = fragment and request.htmx.target == "usage-table"
    context = {
        "filters": filters,
        "keys": keys,
        "key_names": key_names,
        "ranges": RANGES,
        "providers": PROVIDER_NAMES,
        "statuses": STATUS_NAMES,
    }
    status = 200
    if filters.errors:
        status = 400
    else:
        scope = filters.scope(current_user.id)
        totals = usage_stats.totals(scope)
        try:
            # Nothing to look for when the totals (from the rollups) say there is nothing.
            page = (
                usage_stats.log_page(
                    scope, before=filters.before, after=filters.after, size=PAGE_SIZE
                )
                if totals.requests
                else usage_stats.LogPage([], None, None)
            )
        except usage_stats.UnknownCursor:
            filters.errors.append("That page of the log does not exist: start from the newest.")
            status = 400
        else:
            context.update(page=page, totals=totals)
    headers = {"Vary": "HX-Target"}
    if log_only and status == 200:
        return render_template("portal/partials/usage_table.html", **context), status, headers
    # The models of the range, and the one chosen even when the range has none of it.
    models = usage_stats.models_used(current_user.id, filters.first_day, filters.last_day)
    context["models"] = sorted({*models, filters.model_id} - {None})
    if log_only:
        headers["HX-Retarget"] = "#usage-view"  # the error belongs with the filters
    template = "portal/partials/usage_view.html" if fragment else "portal/usage.html"
    return render_template(template, **context), status, headers


def _error_json(filters: Filters):
    return jsonify({"error": {"message": " ".join(filters.errors)}}), 400


@bp.get("/usage/chart.json")
def usage_chart():
    """Requests and spend per UTC day of the filtered usage, stacked by model or by key.

    Credit amounts are exact decimal strings; the costliest CHART_SERIES members are drawn and
    the rest are summed into one "Other" series.
    """
    keys = _account_keys()
    key_names = {key.id: key.name for key in keys}
    filters = read_filters(set(key_names))
    if filters.errors:
        return _error_json(filters)
    figures = usage_stats.daily(filters.scope(current_user.id), filters.stack)
    shown, rest = figures.series[:CHART_SERIES], figures.series[CHART_SERIES:]
    series = [
        {
            "label": s.key if filters.stack == "model" else _key_label(key_names, s.key),
            "cost": [nanos_to_credits(n) for n in s.cost_nanocredits],
            "requests": s.requests,
        }
        for s in shown
    ]
    if rest:
        series.append(
            {
                "label": f"Other ({len(rest)})",
                "cost": [
                    nanos_to_credits(sum(column))
                    for column in zip(*(s.cost_nanocredits for s in rest), strict=True)
                ],
                "requests": [
                    sum(column) for column in zip(*(s.requests for s in rest), strict=True)
                ],
            }
        )
    return jsonify(
        {
            "days": [day.isoformat() for day in figures.days],
            "time_zone": "UTC",
            "stack": figures.stack,
            "series": series,
            "requests": figures.requests,
            "cost": [nanos_to_credits(n) for n in figures.cost_nanocredits],
        }
    )


@bp.get("/usage.csv")
def usage_csv():
    """The filtered log as CSV, every request, oldest first, streamed in constant memory."""
    keys = _account_keys()
    key_names = {key.id: key.name for key in keys}
    filters = read_filters(set(key_names))
    if filters.errors:
        return Response("\n".join(filters.errors) + "\n", status=400, mimetype="text/plain")
    scope = filters.scope(current_user.id)
    # The generator runs after this view returns: it takes the engine, not the session.
    body = usage_stats.export_csv(db.engine, scope, key_names)
    name = f"onekey-usage-{scope.first_day.isoformat()}-to-{scope.last_day.isoformat()}.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


STATUS_EXPLAINED = {
    "ok": "The provider reported this request's token counts in full; they are what was billed.",
    "partial": (
        "The stream ended before it finished (the client disconnected or the connection "
        "failed), after the provider had reported counts for part of it. Those counts were "
        "billed, with output never below what was delivered to you: one token per 4 bytes "
        "delivered, rounded up."
    ),
    "estimated": (
        "The provider reported no token counts (the stream ended before its usage report). "
        "Input was billed at OneKey's estimate of the prompt (how it was made is below, when "
        "recorded), and output at one token per 4 bytes delivered to you, rounded up."
    ),
    "upstream_error": (
        "The provider failed or answered with an error. Only tokens the provider itself "
        "reported were billed; without a report, nothing was."
    ),
}


@bp.get("/usage/<int:record_id>")
def usage_detail(record_id: int):
    """One request: its ids, the prices applied, every token class, and what its status means."""
    record = usage_stats.record_of(current_user.id, record_id)
    if record is None:
        abort(404)
    lines, computed = usage_stats.cost_lines(record)
    key_names = {key.id: key.name for key in _account_keys()}
    context = {
        "record": record,
        "key_label": _key_label(key_names, record.api_key_id),
        "lines": lines,
        "computed_cost": computed,
        "tier": (record.prices_applied or {}).get("tier"),
        "explained": STATUS_EXPLAINED.get(record.status, ""),
        "back_url": url_for("portal.usage"),
    }
    if is_fragment_request():
        return render_template("portal/partials/usage_detail.html", **context)
    return render_template("portal/usage_detail.html", **context)
