"""What the customer reads of the ledger: their activity with a running balance, and their spend.

Usage debits are one ledger entry per request, so the activity shows one line per UTC day of them
(its sum and how many requests), listed after that day's other entries; every other movement is a
line of its own. Pages hold whole days, newest first. A line's balance is the balance after it,
adding the lines in the order shown: the oldest line of a page starts from the balance before that
page's first day, the sum of every entry before it, or (the same, balance == sum(ledger) being
the ledger's invariant) the cached balance less every entry since; so pages agree with each other
and the newest page's top line with the balance now.

Every query names the account and is served by the ledger's (account_id, kind, created_at, amount)
index: usage days are found one index probe each, and a day's usage is summed from one range of the
index alone (a range per day costs less than grouping by a computed day).
Amounts are integers of nanocredits throughout; pages format them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, LedgerEntry, Purchase, RefundPart
from app.models.ledger import LEDGER_KINDS
from app.models.types import utcnow

PAGE_ROWS = 31  # lines; about a month of days of usage
OTHER_KINDS = tuple(kind for kind in LEDGER_KINDS if kind != "usage")


@dataclass(frozen=True)
class ActivityRow:
    """One line: a ledger entry, or (kind "usage") one UTC day of usage debits."""

    kind: str
    at: datetime  # the entry's time; a usage day's last debit
    day: date
    amount_nanocredits: int
    balance_nanocredits: int  # after this line
    requests: int = 0  # a usage day's debits
    public_note: str | None = None  # what an admin chose to show about a grant or adjustment
    purchase_id: int | None = None  # a purchase's own, or the purchase a refund paid back


@dataclass(frozen=True)
class ActivityPage:
    rows: list[ActivityRow]
    opening_balance_nanocredits: int  # before the oldest line shown
    older: date | None  # `before` of the next page; None when nothing is older


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _in_range(query, start: datetime | None, end: datetime | None):
    if start is not None:
        query = query.where(LedgerEntry.created_at >= start)
    if end is not None:
        query = query.where(LedgerEntry.created_at < end)
    return query


def _latest_usage_before(account_id: int, end: datetime | None) -> date | None:
    """The UTC day of the account's latest usage debit before `end` (one index probe)."""
    latest = db.session.scalar(
        _in_range(
            select(func.max(LedgerEntry.created_at)).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
            ),
            None,
            end,
        )
    )
    return latest.date() if latest is not None else None


def _page_days(account_id: int, end: datetime | None) -> tuple[list[date], set[date]]:
    """The days of the page ending before `end`, newest first, and those of them with usage:
    whole days, until they make at least PAGE_ROWS lines (a day of many entries may make more) or
    nothing older is left."""
    entry_days = Counter(
        created_at.date()
        for created_at in db.session.scalars(
            _in_range(
                select(LedgerEntry.created_at).where(
                    LedgerEntry.account_id == account_id, LedgerEntry.kind.in_(OTHER_KINDS)
                ),
                None,
                end,
            )
            .order_by(LedgerEntry.created_at.desc())
            .limit(PAGE_ROWS)
        )
    )
    # Every fetched entry's day is taken before the lines run out, so fetching PAGE_ROWS of them
    # is enough: the days past them are reached only once PAGE_ROWS lines are made.
    pending = sorted(entry_days, reverse=True)
    usage_day = _latest_usage_before(account_id, end)
    days: list[date] = []
    with_usage: set[date] = set()
    lines = 0
    while lines < PAGE_ROWS and (pending or usage_day is not None):
        day = max(d for d in (pending[0] if pending else None, usage_day) if d is not None)
        days.append(day)
        lines += entry_days.get(day, 0)
        if pending and pending[0] == day:
            pending.pop(0)
        if usage_day == day:
            with_usage.add(day)
            lines += 1
            usage_day = _latest_usage_before(account_id, day_start(day))
    return days, with_usage


def _usage_of_day(account_id: int, day: date) -> tuple[int, int, datetime]:
    """(sum, number, last time) of the account's usage debits in the UTC day: one range of the
    index, aggregated without grouping."""
    total, number, last = db.session.execute(
        _in_range(
            select(
                func.sum(LedgerEntry.amount_nanocredits),
                func.count(),
                func.max(LedgerEntry.created_at),
            ).where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"),
            day_start(day),
            day_start(day + timedelta(days=1)),
        )
    ).one()
    return int(total), int(number), last


def _purchases_of(payment_intents: set[str], refunds: set[str], account_id: int) -> dict:
    """{("purchase", payment intent id) or ("refund", refund id): purchase id}, for receipts."""
    found: dict[tuple[str, str], int] = {}
    if payment_intents:
        for purchase_id, intent in db.session.execute(
            select(Purchase.id, Purchase.stripe_payment_intent_id).where(
                Purchase.account_id == account_id,
                Purchase.stripe_payment_intent_id.in_(payment_intents),
            )
        ):
            found[("purchase", intent)] = purchase_id
    if refunds:
        for purchase_id, refund in db.session.execute(
            select(RefundPart.purchase_id, RefundPart.stripe_refund_id)
            .join(Purchase, Purchase.id == RefundPart.purchase_id)
            .where(Purchase.account_id == account_id, RefundPart.stripe_refund_id.in_(refunds))
        ):
            found[("refund", refund)] = purchase_id
    return found


def _sum_of(account_id: int, start: datetime | None, end: datetime | None) -> int:
    """The sum of every entry of the account in [start, end)."""
    return int(
        db.session.scalar(
            _in_range(
                select(func.coalesce(func.sum(LedgerEntry.amount_nanocredits), 0)).where(
                    LedgerEntry.account_id == account_id, LedgerEntry.kind.in_(LEDGER_KINDS)
                ),
                start,
                end,
            )
        )
    )


def _balance_before(account_id: int, start: datetime, end: datetime | None, page: int) -> int:
    """The balance before `start`, for a page of [start, end) whose entries sum to `page`.

    It is the sum of every entry before `start`, or equally the cached balance less the page and
    every entry since `end`: the side with less time to sum is read (the newest page needs no sum
    at all).
    """
    balance, opened = db.session.execute(
        select(Account.balance_nanocredits, Account.created_at).where(Account.id == account_id)
    ).one()
    if end is None:
        return balance - page
    if start - opened < utcnow() - end:
        return _sum_of(account_id, None, start)
    return balance - page - _sum_of(account_id, end, None)


def activity_page(account_id: int, before: date | None = None) -> ActivityPage:
    """The page of the account's activity ending before the UTC day `before` (None: the newest).

    Read it in one snapshot of the database (the caller's transaction), or an entry committed
    between two of its statements could be missing from the lines yet counted in the balances.
    """
    end = day_start(before) if before is not None else None
    days, with_usage = _page_days(account_id, end)
    if not days:
        balance = db.session.scalar(
            select(Account.balance_nanocredits).where(Account.id == account_id)
        )
        return ActivityPage(rows=[], opening_balance_nanocredits=int(balance or 0), older=None)
    start = day_start(days[-1])
    mine = (LedgerEntry.account_id == account_id,)
    entries = db.session.execute(
        _in_range(
            select(
                LedgerEntry.kind,
                LedgerEntry.created_at,
                LedgerEntry.amount_nanocredits,
                LedgerEntry.public_note,
                LedgerEntry.reference_type,
                LedgerEntry.reference_id,
            ).where(*mine, LedgerEntry.kind.in_(OTHER_KINDS)),
            start,
            end,
        ).order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    ).all()
    usage_days = {day: _usage_of_day(account_id, day) for day in with_usage}
    page_total = sum(e.amount_nanocredits for e in entries) + sum(
        total for total, _, _ in usage_days.values()
    )
    opening = _balance_before(account_id, start, end, page_total)
    older = db.session.scalar(
        select(LedgerEntry.id)
        .where(*mine, LedgerEntry.kind.in_(LEDGER_KINDS), LedgerEntry.created_at < start)
        .limit(1)
    )
    purchases = _purchases_of(
        {e.reference_id for e in entries if e.kind == "purchase" and e.reference_id},
        {e.reference_id for e in entries if e.kind == "refund" and e.reference_id},
        account_id,
    )

    lines: list[dict] = []  # newest first
    by_day: dict[date, list] = {}
    for entry in entries:
        by_day.setdefault(entry.created_at.date(), []).append(entry)
    for day in days:
        if day in usage_days:
            total, count, last = usage_days[day]
            lines.append(
                {"kind": "usage", "at": last, "day": day, "amount": total, "requests": count}
            )
        for entry in by_day.get(day, []):
            lines.append(
                {
                    "kind": entry.kind,
                    "at": entry.created_at,
                    "day": day,
                    "amount": entry.amount_nanocredits,
                    "public_note": entry.public_note
                    if entry.kind in ("grant", "adjustment")
                    else None,
                    "purchase_id": purchases.get((entry.kind, entry.reference_id)),
                }
            )
    rows: list[ActivityRow] = []
    balance = opening
    for line in reversed(lines):
        balance += line["amount"]
        rows.append(
            ActivityRow(
                kind=line["kind"],
                at=line["at"],
                day=line["day"],
                amount_nanocredits=line["amount"],
                balance_nanocredits=balance,
                requests=line.get("requests", 0),
                public_note=line.get("public_note"),
                purchase_id=line.get("purchase_id"),
            )
        )
    rows.reverse()
    return ActivityPage(
        rows=rows,
        opening_balance_nanocredits=opening,
        older=days[-1] if older is not None else None,
    )


@dataclass(frozen=True)
class Spend:
    """Usage debits in UTC days: today so far, this month so far, and each of the last 7 days."""

    today_nanocredits: int
    month_nanocredits: int
    days: list[tuple[date, int]]  # oldest first, today last


def _spent(account_id: int, start: datetime, end: datetime | None) -> int:
    """Credit spent on requests in [start, end): the usage debits' sum, negated."""
    return -int(
        db.session.scalar(
            _in_range(
                select(func.coalesce(func.sum(LedgerEntry.amount_nanocredits), 0)).where(
                    LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
                ),
                start,
                end,
            )
        )
    )


def spend(account_id: int, now: datetime | None = None) -> Spend:
    """What the account spent on requests: its usage debits, the same amounts as its usage
    records' (one settlement writes both), summed from the ledger index one UTC day at a time."""
    today = (now or utcnow()).astimezone(UTC).date()
    first = today - timedelta(days=6)
    days = [
        (
            first + timedelta(days=n),
            _spent(
                account_id,
                day_start(first + timedelta(days=n)),
                day_start(first + timedelta(days=n + 1)) if n < 6 else None,
            ),
        )
        for n in range(7)
    ]
    month_start = today.replace(day=1)
    month = sum(amount for day, amount in days if day >= month_start)
    if month_start < first:
        month += _spent(account_id, day_start(month_start), day_start(first))
    return Spend(today_nanocredits=days[-1][1], month_nanocredits=month, days=days)
