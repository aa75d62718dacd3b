"""The admin's money overview (`/admin`): liability, held credit, money in and out, usage revenue
against provider cost, per UTC day over a chosen range; accounts below zero and flagged."""

from __future__ import annotations

from datetime import date, timedelta

from flask import jsonify, render_template, request

from app.admin import bp
from app.models.types import utcnow
from app.services import overview as overview_service
from app.services.money import nanos_to_credits

RANGES = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom"}
RANGE_DAYS = {"today": 1, "7d": 7, "30d": 30}
DEFAULT_RANGE = "30d"
# A custom range is at most this many days: the chart and the table show each day.
MAX_DAYS = 366
SERIES_LABELS = {
    "paid_in": "Paid in",
    "granted": "Granted",
    "refunded": "Refunded",
    "disputed": "Disputed",
    "revenue": "Usage at sell price",
    "list_cost": "Provider cost at list price",
}


def _read_range() -> tuple[str, date, date, list[str]]:
    """The query string's range as (range, first day, last day, errors); UTC days."""
    args = request.args
    errors: list[str] = []
    today = utcnow().date()
    chosen = args.get("range", "").strip() or (
        "custom" if args.get("from") or args.get("to") else DEFAULT_RANGE
    )
    if chosen not in RANGES:
        errors.append("Choose a range: today, the last 7 or 30 days, or custom dates.")
        chosen = DEFAULT_RANGE
    first = last = None
    if chosen == "custom":
        first_text, last_text = args.get("from", "").strip(), args.get("to", "").strip()
        if not first_text or not last_text:
            errors.append("A custom range needs a from date and a to date.")
        else:
            try:
                first, last = date.fromisoformat(first_text), date.fromisoformat(last_text)
            except ValueError:
                errors.append("The from and to dates must be dates like 2026-12-31.")
                first = last = None
            if first and last and first > last:
                errors.append("The from date must not be after the to date.")
            elif first and last and (last - first).days + 1 > MAX_DAYS:
                errors.append(f"A custom range is at most {MAX_DAYS} days.")
    else:
        first, last = today - timedelta(days=RANGE_DAYS[chosen] - 1), today
    if errors or first is None or last is None:
        first, last = today - timedelta(days=RANGE_DAYS[DEFAULT_RANGE] - 1), today
    return chosen, first, last, errors


def _range_args(chosen: str, first: date, last: date) -> dict:
    if chosen == "custom":
        return {"range": chosen, "from": first.isoformat(), "to": last.isoformat()}
    return {"range": chosen}


@bp.get("/")
def index():
    """The money overview: figures over the range, and the accounts that need a look."""
    chosen, first, last, errors = _read_range()
    figures = None if errors else overview_service.overview(first, last)
    below_zero, flagged = overview_service.accounts_to_look_at()
    liability, held = (
        (figures.liability, figures.held) if figures else overview_service.outstanding()
    )
    return render_template(
        "admin/overview.html",
        ranges=RANGES,
        chosen=chosen,
        first_day=first,
        last_day=last,
        errors=errors,
        figures=figures,
        liability=liability,
        held=held,
        labels=SERIES_LABELS,
        chart_args=_range_args(chosen, first, last),
        below_zero=below_zero,
        flagged=flagged,
        listed=overview_service.ACCOUNTS_LISTED,
    ), (400 if errors else 200)


@bp.get("/overview/chart.json")
def overview_chart():
    """The overview's figures per UTC day, as exact decimal strings of credits."""
    _chosen, first, last, errors = _read_range()
    if errors:
        return jsonify({"error": {"message": " ".join(errors)}}), 400
    figures = overview_service.overview(first, last)
    return jsonify(
        {
            "days": [day.isoformat() for day in figures.days],
            "time_zone": "UTC",
            "series": [
                {
                    "key": name,
                    "label": label,
                    "values": [nanos_to_credits(n) for n in figures.daily[name]],
                }
                for name, label in SERIES_LABELS.items()
            ],
        }
    )
