"""Provider health (issue 11, item 5): per provider and model, over the last hour or day, from the
usage records the proxy writes at every settlement: requests, their outcomes, latency and time to
first token, and whether a provider is failing right now.

A record's status says how its request ended: `upstream_error` (the provider failed or timed out
before anything was delivered), `partial` (a stream ended early), `estimated` (no provider counts).
Latency and time to first token are taken over the requests that were answered (every status but
`upstream_error`, whose quick failures would make a failing provider look fast). Percentiles are
nearest-rank (the smallest value with at least p% of the values at or below it): PostgreSQL's
percentile_disc in SQL, and the same rule in Python over the newest SQLITE_SAMPLE_LIMIT records on
SQLite, which has no such aggregate. Counts are exact on both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import render_template, request
from sqlalchemy import case, func, select

from app.admin import bp
from app.extensions import db
from app.models import UsageRecord
from app.models.types import utcnow
from app.web_helpers import is_fragment_request

WINDOWS = {"hour": ("Last hour", timedelta(hours=1)), "day": ("Last 24 hours", timedelta(days=1))}
# "Failing now": over the last RECENT, at least FAILING_MIN_REQUESTS requests and at least
# FAILING_ERROR_PERCENT of them upstream errors.
RECENT = timedelta(minutes=5)
FAILING_MIN_REQUESTS = 3
FAILING_ERROR_PERCENT = 50
PERCENTILES = (0.5, 0.95)
OUTCOMES = ("ok", "upstream_error", "partial", "estimated")
ERROR_KINDS = ("upstream_error", "partial", "estimated")
SQLITE_SAMPLE_LIMIT = 100_000
REFRESH_SECONDS = 30


def _no_percentiles() -> dict[float, int | None]:
    return dict.fromkeys(PERCENTILES)


@dataclass
class WindowStats:
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    # Milliseconds, by percentile; None without an answered request.
    latency_ms: dict[float, int | None] = field(default_factory=_no_percentiles)
    first_token_ms: dict[float, int | None] = field(default_factory=_no_percentiles)

    def percent(self, outcome: str) -> float | None:
        return 100 * self.outcomes[outcome] / self.requests if self.requests else None


@dataclass
class HealthRow:
    """One model of a provider, or (model_id None) the provider as a whole."""

    provider: str
    model_id: str | None
    windows: dict[str, WindowStats] = field(
        default_factory=lambda: {name: WindowStats() for name in WINDOWS}
    )
    recent_requests: int = 0
    recent_errors: int = 0

    @property
    def failing(self) -> bool:
        return (
            self.recent_requests >= FAILING_MIN_REQUESTS
            and 100 * self.recent_errors >= FAILING_ERROR_PERCENT * self.recent_requests
        )


@dataclass
class ProviderHealth:
    total: HealthRow
    models: list[HealthRow]


def nearest_rank(values: list[int], percentile: float) -> int | None:
    """The nearest-rank percentile, computed as PostgreSQL's percentile_disc does."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(percentile * len(ordered)), 1) - 1]


def provider_health(now: datetime | None = None) -> list[ProviderHealth]:
    """Every provider and model with a usage record in the last day, providers by name."""
    now = now or utcnow()
    starts = {name: now - span for name, (_, span) in WINDOWS.items()}
    earliest = min(starts.values())
    rows: dict[tuple[str, str | None], HealthRow] = {}

    def row(provider: str, model_id: str | None) -> HealthRow:
        return rows.setdefault((provider, model_id), HealthRow(provider, model_id))

    record = UsageRecord
    in_window = {
        name: func.sum(case((record.created_at >= start, 1), else_=0))
        for name, start in starts.items()
    }
    recent = func.sum(case((record.created_at >= now - RECENT, 1), else_=0))
    counts = db.session.execute(
        select(record.provider, record.model_id, record.status, *in_window.values(), recent)
        .where(record.created_at >= earliest)
        .group_by(record.provider, record.model_id, record.status)
    ).all()
    for provider, model_id, status, *window_counts, recent_count in counts:
        for target in (row(provider, model_id), row(provider, None)):
            for name, count in zip(WINDOWS, window_counts, strict=True):
                stats = target.windows[name]
                stats.requests += count or 0
                stats.outcomes[status] = stats.outcomes.get(status, 0) + (count or 0)
            target.recent_requests += recent_count or 0
            if status == "upstream_error":
                target.recent_errors += recent_count or 0

    if db.engine.dialect.name == "postgresql":
        _percentiles_in_sql(rows, starts, earliest)
    else:
        _percentiles_in_python(rows, starts, earliest)

    providers = sorted({provider for provider, _ in rows})
    return [
        ProviderHealth(
            total=rows[(provider, None)],
            models=sorted(
                (r for (p, m), r in rows.items() if p == provider and m is not None),
                key=lambda r: r.model_id,
            ),
        )
        for provider in providers
    ]


MEASURES = (("latency_ms", "latency_ms"), ("first_token_ms", "time_to_first_token_ms"))


def _answered():
    return UsageRecord.status != "upstream_error"


def _percentiles_in_sql(rows, starts, earliest) -> None:
    record = UsageRecord
    columns = [
        func.percentile_disc(p)
        .within_group(getattr(record, column))
        .filter(record.created_at >= starts[window])
        for window in WINDOWS
        for _, column in MEASURES
        for p in PERCENTILES
    ]
    for by_model in (True, False):
        keys = [record.provider, record.model_id] if by_model else [record.provider]
        results = db.session.execute(
            select(*keys, *columns)
            .where(record.created_at >= earliest, _answered())
            .group_by(*keys)
        ).all()
        for result in results:
            key = (result[0], result[1] if by_model else None)
            values = iter(result[len(keys) :])
            for window in WINDOWS:
                stats = rows[key].windows[window]
                for attribute, _ in MEASURES:
                    getattr(stats, attribute).update({p: next(values) for p in PERCENTILES})


def _percentiles_in_python(rows, starts, earliest) -> None:
    record = UsageRecord
    sample = db.session.execute(
        select(
            record.provider,
            record.model_id,
            record.created_at,
            record.latency_ms,
            record.time_to_first_token_ms,
        )
        .where(record.created_at >= earliest, _answered())
        .order_by(record.created_at.desc())
        .limit(SQLITE_SAMPLE_LIMIT)
    ).all()
    values: dict[tuple, list[int]] = {}
    for provider, model_id, created_at, latency, first_token in sample:
        for key in ((provider, model_id), (provider, None)):
            for window, start in starts.items():
                if created_at < start:
                    continue
                for (attribute, _), value in zip(MEASURES, (latency, first_token), strict=True):
                    if value is not None:
                        values.setdefault((key, window, attribute), []).append(value)
    for key, health in rows.items():
        for window in WINDOWS:
            stats = health.windows[window]
            for attribute, _ in MEASURES:
                measured = values.get((key, window, attribute), [])
                getattr(stats, attribute).update(
                    {p: nearest_rank(measured, p) for p in PERCENTILES}
                )


# --- the page --------------------------------------------------------------------------------


@bp.get("/health")
def health():
    """The page, or its table alone when HTMX refreshes it."""
    window = request.args.get("window", "hour")
    if window not in WINDOWS:
        window = "hour"
    report = provider_health()
    context = {
        "providers": report,
        "failing": [p.total for p in report if p.total.failing],
        "window": window,
        "windows": WINDOWS,
        "percentiles": PERCENTILES,
        "error_kinds": ERROR_KINDS,
        "recent_minutes": int(RECENT.total_seconds() // 60),
        "failing_min_requests": FAILING_MIN_REQUESTS,
        "failing_error_percent": FAILING_ERROR_PERCENT,
        "refresh_seconds": REFRESH_SECONDS,
        "generated_at": utcnow(),
    }
    if is_fragment_request():
        return render_template("admin/partials/health_table.html", **context)
    return render_template("admin/health.html", **context)
