"""A key's credit limit that resets (OpenRouter's `limit_reset`): the limit applies to what the
key spent in the current period, which starts at midnight UTC (daily), on Monday at midnight UTC
(weekly) or on the first of the month at midnight UTC (monthly).

A key keeps its lifetime `usage_nanocredits` and, for a resetting limit, the usage it had when the
period it last saw began (`period_usage_base_nanocredits`, from `period_started_at`). This
period's spend is usage − base. Only settlement moves a key's usage, and settlement rolls the
period over in the same UPDATE that adds the cost (base := usage before the cost), so while the
stored period is over nothing has been spent since the new one began, and readers (the hold, /v1/key,
the portal) take the base to be the usage itself without writing anything. A cost is counted in
the period it was settled in, once: a hold placed before midnight and settled after counts as
held until midnight and as spend after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

LIMIT_RESETS = ("daily", "weekly", "monthly")
RESET_PARAMS = {"daily": "day_start", "weekly": "week_start", "monthly": "month_start"}


def period_start(reset: str, now: datetime) -> datetime:
    """When the period of `reset` that contains `now` began (aware UTC)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        return day
    if reset == "weekly":
        return day - timedelta(days=day.weekday())
    if reset == "monthly":
        return day.replace(day=1)
    raise ValueError(f"unknown limit reset {reset!r}")


def next_period_start(reset: str, now: datetime) -> datetime:
    """When the period of `reset` that contains `now` ends."""
    start = period_start(reset, now)
    if reset == "daily":
        return start + timedelta(days=1)
    if reset == "weekly":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def period_params(now: datetime) -> dict[str, datetime]:
    """The three period starts as statement parameters (day_start, week_start, month_start)."""
    return {param: period_start(reset, now) for reset, param in RESET_PARAMS.items()}


def period_start_sql(reset_column: str, *, postgres: bool) -> str:
    """SQL for the start of the current period of the reset in `reset_column` (NULL for none).

    PostgreSQL truncates the statement's `:now` (date_trunc's weeks start on Monday, as a weekly
    reset does), which keeps the hot path's statements short enough for psycopg to cache their
    parsing (tests/unit/test_hot_path_statements.py). SQLite takes the `period_params` instead.
    """
    if postgres:
        units = " ".join(
            f"WHEN '{reset}' THEN '{unit}'"
            for reset, unit in (("daily", "day"), ("weekly", "week"), ("monthly", "month"))
        )
        return f"date_trunc(CASE {reset_column} {units} END, CAST(:now AS timestamp))"
    whens = " ".join(f"WHEN '{reset}' THEN :{name}" for reset, name in RESET_PARAMS.items())
    return f"CASE {reset_column} {whens} END"


def period_over_sql(table: str, *, postgres: bool) -> str:
    """SQL: the key (columns of `table`) has a resetting limit whose stored period is over."""
    start = period_start_sql(f"{table}.limit_reset", postgres=postgres)
    return (
        f"({table}.limit_reset IS NOT NULL AND ({table}.period_started_at IS NULL "
        f"OR {table}.period_started_at < {start}))"
    )


def period_usage_sql(table: str, *, postgres: bool) -> str:
    """SQL: what the key (columns of `table`) spent in the current period, or in its lifetime
    when its limit does not reset."""
    return (
        f"({table}.usage_nanocredits - CASE WHEN {table}.limit_reset IS NULL THEN 0 "
        f"WHEN {period_over_sql(table, postgres=postgres)} THEN {table}.usage_nanocredits "
        f"ELSE {table}.period_usage_base_nanocredits END)"
    )


def period_usage(
    *,
    limit_reset: str | None,
    usage: int,
    base: int,
    period_started_at: datetime | None,
    now: datetime,
) -> int:
    """What a key spent in its current period (lifetime usage when its limit does not reset)."""
    if limit_reset is None:
        return usage
    if period_started_at is None or period_started_at < period_start(limit_reset, now):
        return 0
    return usage - base
