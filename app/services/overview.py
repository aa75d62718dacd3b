"""The admin's money overview: what customers are owed, what came in and went out, and what usage
earned over what the providers charge for it, per UTC day.

Money moved is read from the ledger (entries of a kind in a time range, from the index on
(kind, created_at, amount) alone); usage from the daily rollups plus the raw records above their
watermark, as the usage page reads it (usage_stats, every account at once). Provider cost is the
sum of each request's list cost, recorded at settlement from the provider's list prices of the
moment by the cost's own rules (the tier the prompt reached), so a price change or a
long-context request is costed as the provider billed it. Records from before migration 0014
carry the list prices of that migration; the few without any (their model's prices gone) are
counted, per model, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, LedgerEntry
from app.services import usage_stats
from app.services.usage_rollups import day_start, utc_day

# Ledger kind -> the overview's figure; refunds and disputes are shown as the credit that left
# (a won dispute's entry gives it back, so it counts against the disputed figure).
MONEY_KINDS = {
    "purchase": "paid_in",
    "grant": "granted",
    "refund": "refunded",
    "dispute": "disputed",
}
OUTGOING = ("refund", "dispute")
FIGURES = (*MONEY_KINDS.values(), "revenue", "list_cost")
ACCOUNTS_LISTED = 200


@dataclass
class Overview:
    first_day: date
    last_day: date
    days: list[date]
    liability: int  # Σ accounts.balance, nanocredits
    held: int  # Σ accounts.held
    # Figure name -> nanocredits per day of `days`.
    daily: dict[str, list[int]]
    requests: int = 0
    # Model -> requests of the range without a known list cost (not in the provider cost).
    unpriced: dict[str, int] = field(default_factory=dict)

    def total(self, figure: str) -> int:
        return sum(self.daily[figure])

    @property
    def margin(self) -> int:
        return self.total("revenue") - self.total("list_cost")


def money_daily(first_day: date, last_day: date, days: list[date]) -> dict[str, list[int]]:
    """Paid in, granted, refunded and disputed per UTC day, from the ledger."""
    index = {day: n for n, day in enumerate(days)}
    result = {name: [0] * len(days) for name in MONEY_KINDS.values()}
    day = utc_day(LedgerEntry.created_at)
    rows = db.session.execute(
        select(day, LedgerEntry.kind, func.sum(LedgerEntry.amount_nanocredits))
        .where(
            LedgerEntry.kind.in_(MONEY_KINDS),
            LedgerEntry.created_at >= day_start(first_day),
            LedgerEntry.created_at < day_start(last_day + timedelta(days=1)),
        )
        .group_by(day, LedgerEntry.kind)
    ).all()
    for row_day, kind, amount in rows:
        amount = int(amount or 0)
        result[MONEY_KINDS[kind]][index[_as_date(row_day)]] += (
            -amount if kind in OUTGOING else amount
        )
    return result


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def outstanding() -> tuple[int, int]:
    """(Σ balances, Σ held) of every account now, in nanocredits."""
    liability, held = db.session.execute(
        select(
            func.coalesce(func.sum(Account.balance_nanocredits), 0),
            func.coalesce(func.sum(Account.held_nanocredits), 0),
        )
    ).one()
    return int(liability), int(held)


def overview(first_day: date, last_day: date) -> Overview:
    """Every figure of the overview for UTC days first_day..last_day (inclusive)."""
    scope = usage_stats.UsageScope(None, first_day, last_day)
    days = scope.days()
    index = {day: n for n, day in enumerate(days)}
    liability, held = outstanding()
    daily = money_daily(first_day, last_day, days)
    daily["revenue"] = [0] * len(days)
    daily["list_cost"] = [0] * len(days)
    unpriced: dict[str, int] = {}
    requests = 0
    for (day, model), sums in usage_stats.by_day_and_model(scope).items():
        n = index[day]
        requests += sums.requests
        daily["revenue"][n] += sums.cost_nanocredits
        daily["list_cost"][n] += sums.list_cost_nanocredits
        if sums.list_unpriced:
            unpriced[model] = unpriced.get(model, 0) + sums.list_unpriced
    return Overview(
        first_day=first_day,
        last_day=last_day,
        days=days,
        liability=liability,
        held=held,
        daily=daily,
        requests=requests,
        unpriced=dict(sorted(unpriced.items())),
    )


def accounts_to_look_at(limit: int = ACCOUNTS_LISTED) -> tuple[list[Account], list[Account]]:
    """Accounts below zero (lowest first) and flagged accounts (newest first), `limit` of each."""
    below = db.session.scalars(
        select(Account)
        .where(Account.balance_nanocredits < 0)
        .order_by(Account.balance_nanocredits.asc(), Account.id.asc())
        .limit(limit)
    ).all()
    flagged = db.session.scalars(
        select(Account)
        .where(Account.flagged_reason.is_not(None))
        .order_by(Account.id.desc())
        .limit(limit)
    ).all()
    return list(below), list(flagged)
