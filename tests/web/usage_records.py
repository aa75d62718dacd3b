"""Usage records for the usage page's tests, and their figures summed the slow way."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import UsageRecord
from app.models.types import utcnow
from app.services.usage_stats import UsageScope

TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def add_usage(
    account_id: int,
    key_id: int | None = None,
    *,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    status: str = "ok",
    cost: int = 1_000,
    at: datetime | None = None,
    record_id: int | None = None,
    request_id: str = "req-test",
    **columns,
) -> int:
    """Add one usage record (flushed, not committed) and return its id. `at` defaults to an
    hour ago, older than the fold delay."""
    record = UsageRecord(
        account_id=account_id,
        api_key_id=key_id,
        request_id=request_id,
        provider=provider,
        model_id=model,
        route=columns.pop("route", "chat.completions"),
        status=status,
        cost_nanocredits=cost,
        prices_applied=columns.pop("prices_applied", {}),
        created_at=at or utcnow() - timedelta(hours=1),
        **{"input_tokens": 11, "output_tokens": 7, **columns},
    )
    if record_id is not None:
        record.id = record_id
    db.session.add(record)
    db.session.flush()
    return record.id


def matching(scope: UsageScope) -> list[UsageRecord]:
    """The scope's records, filtered in Python."""
    rows = db.session.scalars(select(UsageRecord).where(UsageRecord.account_id == scope.account_id))
    return [
        r
        for r in rows
        if scope.start <= r.created_at < scope.end
        and (scope.key_id is None or r.api_key_id == scope.key_id)
        and (scope.model_id is None or r.model_id == scope.model_id)
        and (scope.provider is None or r.provider == scope.provider)
        and (scope.status is None or r.status == scope.status)
    ]


def raw_totals(scope: UsageScope) -> dict[str, int]:
    rows = matching(scope)
    totals = {"requests": len(rows), "cost_nanocredits": sum(r.cost_nanocredits for r in rows)}
    for name in TOKEN_FIELDS:
        totals[name] = sum(getattr(r, name) for r in rows)
    return totals


def raw_daily(scope: UsageScope, stack: str) -> dict[tuple, tuple[int, int]]:
    """(UTC day, model or key id) -> (requests, cost), for the members that have any."""
    figures: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in matching(scope):
        member = r.model_id if stack == "model" else (r.api_key_id or 0)
        figures[(r.created_at.date(), member)][0] += 1
        figures[(r.created_at.date(), member)][1] += r.cost_nanocredits
    return {k: tuple(v) for k, v in figures.items()}


def service_totals(scope: UsageScope) -> dict[str, int]:
    from app.services.usage_stats import totals

    result = totals(scope)
    return {"requests": result.requests, "cost_nanocredits": result.cost_nanocredits} | {
        name: getattr(result, name) for name in TOKEN_FIELDS
    }


def service_daily(scope: UsageScope, stack: str) -> dict[tuple, tuple[int, int]]:
    from app.services.usage_stats import daily

    figures = daily(scope, stack)
    out = {}
    for series in figures.series:
        for day, requests, cost in zip(
            figures.days, series.requests, series.cost_nanocredits, strict=True
        ):
            if requests or cost:
                out[(day, series.key)] = (requests, cost)
    return out
