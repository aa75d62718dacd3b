"""What the usage page shows of one account: totals, daily figures, the request log and its export.

Totals and daily figures are the daily rollups (every record with id <= the watermark) plus the
raw records above the watermark, so they are exact and current however far the fold job lags;
the watermark is read before and after, and a fold that committed in between makes the query run
again (it would otherwise count that fold's records twice). The log reads the records themselves,
newest first, a page at a time by keyset (created_at, id) on (account_id, created_at, id).

Days are UTC days throughout.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import exists, func, select, tuple_, union_all
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer

from app.extensions import db
from app.models import UsageDailyRollup, UsageRecord
from app.services.money import NANOS_PER_CREDIT, div_half_up
from app.services.usage_rollups import day_start, list_unpriced, record_key, utc_day, watermark

records = UsageRecord.__table__
rollups = UsageDailyRollup.__table__

# Token classes as the records store them; reasoning is informational (already inside output).
TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# Billed class (prices_applied's key) -> the record's column.
BILLED_COLUMNS = {
    "input": "input_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "output": "output_tokens",
}
STACKS = ("model", "key")


@dataclass(frozen=True)
class UsageScope:
    """One account's usage records on UTC days first_day..last_day, narrowed by the filters set;
    every account's when account_id is None (the admin overview)."""

    account_id: int | None
    first_day: date
    last_day: date
    key_id: int | None = None
    model_id: str | None = None
    provider: str | None = None
    status: str | None = None

    @property
    def start(self) -> datetime:
        return day_start(self.first_day)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight UTC after last_day."""
        return day_start(self.last_day + timedelta(days=1))

    def days(self) -> list[date]:
        return [
            self.first_day + timedelta(days=n)
            for n in range((self.last_day - self.first_day).days + 1)
        ]

    def _filters(self, table, account, key) -> list:
        where = [] if self.account_id is None else [account == self.account_id]
        if self.key_id is not None:
            where.append(key == self.key_id)
        if self.model_id is not None:
            where.append(table.c.model_id == self.model_id)
        if self.provider is not None:
            where.append(table.c.provider == self.provider)
        if self.status is not None:
            where.append(table.c.status == self.status)
        return where

    def rollup_where(self) -> list:
        return [
            *self._filters(rollups, rollups.c.account_id, rollups.c.api_key_id),
            rollups.c.day >= self.first_day,
            rollups.c.day <= self.last_day,
        ]

    def record_where(
        self,
        *,
        after: tuple[datetime, int] | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list:
        """The scope's records, those after or before a (created_at, id) cursor if given.

        Each side gets one bound on created_at, the tighter: SQLite's planner takes only one of
        two for its index range (and walks from the other). The row value breaks ties.
        """
        at = records.c.created_at
        position = tuple_(at, records.c.id)
        where = self._filters(records, records.c.account_id, records.c.api_key_id)
        if after is not None and after[0] >= self.start:
            where += [at >= after[0], position > after]
        else:
            where.append(at >= self.start)
        if before is not None and before[0] < self.end:
            where += [at <= before[0], position < before]
        else:
            where.append(at < self.end)
        return where

    def unfolded_where(self, folded_through: int) -> list:
        """The records above the watermark: a few minutes of every account's, which the primary
        key finds. The account, key and day are compared as expressions, so that no planner
        walks the account's or the key's index instead, over all of its records."""
        day = utc_day(records.c.created_at)
        return [
            *self._filters(records, records.c.account_id + 0, records.c.api_key_id + 0),
            records.c.id > folded_through,
            day >= self.first_day,
            day <= self.last_day,
        ]


@dataclass
class Totals:
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanocredits: int = 0
    # At the provider's list prices (read by by_day_and_model only); `list_unpriced` counts the
    # requests whose list cost is not known.
    list_cost_nanocredits: int = 0
    list_unpriced: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def _consistent(build) -> list:
    """Rows of build(watermark), all from one watermark: run again if a fold moved it meanwhile.

    Folds commit a chunk a second or so apart at most (a large backlog), so a retry nearly
    always suffices; after three, the watermark's row is share-locked for the rest of this
    transaction, which holds off the next fold until the request ends.
    """
    for _ in range(3):
        before = watermark()
        rows = db.session.execute(build(before)).all()
        if watermark() == before:
            return rows
    return db.session.execute(build(watermark(lock=True))).all()


def totals(scope: UsageScope) -> Totals:
    """Requests, tokens by class and cost of every record in the scope, exactly."""
    folded = select(
        func.sum(rollups.c.requests),
        *(func.sum(rollups.c[name]) for name in TOKEN_COLUMNS),
        func.sum(rollups.c.cost),
    ).where(*scope.rollup_where())

    def build(folded_through: int):
        unfolded = select(
            func.count(),
            *(func.sum(records.c[name]) for name in TOKEN_COLUMNS),
            func.sum(records.c.cost),
        ).where(*scope.unfolded_where(folded_through))
        return union_all(folded, unfolded)

    result = Totals()
    for row in _consistent(build):
        for name, value in zip(("requests", *TOKEN_COLUMNS, "cost_nanocredits"), row, strict=True):
            # PostgreSQL sums BIGINTs as NUMERIC: back to int.
            setattr(result, name, getattr(result, name) + int(value or 0))
    return result


@dataclass
class DailySeries:
    """One stack member (a model, or a key) over the scope's days."""

    key: str | int
    requests: list[int]
    cost_nanocredits: list[int]

    @property
    def total_cost(self) -> int:
        return sum(self.cost_nanocredits)


@dataclass
class Daily:
    days: list[date]
    stack: str
    series: list[DailySeries] = field(default_factory=list)

    @property
    def requests(self) -> list[int]:
        return self._per_day([s.requests for s in self.series])

    @property
    def cost_nanocredits(self) -> list[int]:
        return self._per_day([s.cost_nanocredits for s in self.series])

    def _per_day(self, rows: list[list[int]]) -> list[int]:
        return [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * len(self.days)


def daily(scope: UsageScope, stack: str = "model") -> Daily:
    """Requests and cost per UTC day of the scope, one series per model or per key (NO_KEY for
    records made without one), the costliest first. Raises ValueError for another stack."""
    if stack not in STACKS:
        raise ValueError(f"stack by model or key, not {stack!r}")
    roll_member = rollups.c.model_id if stack == "model" else rollups.c.api_key_id
    folded = (
        select(rollups.c.day, roll_member, func.sum(rollups.c.requests), func.sum(rollups.c.cost))
        .where(*scope.rollup_where())
        .group_by(rollups.c.day, roll_member)
    )

    def build(folded_through: int):
        day = utc_day(records.c.created_at)
        member = records.c.model_id if stack == "model" else record_key()
        unfolded = (
            select(day, member, func.count(), func.sum(records.c.cost))
            .where(*scope.unfolded_where(folded_through))
            .group_by(day, member)
        )
        return union_all(folded, unfolded)

    days = scope.days()
    index = {day: n for n, day in enumerate(days)}
    members: dict[str | int, DailySeries] = {}
    for day, member, requests, cost in _consistent(build):
        series = members.get(member)
        if series is None:
            series = members[member] = DailySeries(member, [0] * len(days), [0] * len(days))
        n = index[day]
        series.requests[n] += int(requests)
        series.cost_nanocredits[n] += int(cost or 0)
    ordered = sorted(members.values(), key=lambda s: (-s.total_cost, -sum(s.requests), str(s.key)))
    return Daily(days=days, stack=stack, series=ordered)


def by_day_and_model(scope: UsageScope) -> dict[tuple[date, str], Totals]:
    """Requests, cost and list cost per (UTC day, model) of the scope, exactly: the overview's
    revenue and provider cost (no token sums: the list cost is each record's own)."""
    columns = ("requests", "cost", "list_cost", "list_unpriced")
    folded = (
        select(rollups.c.day, rollups.c.model_id, *(func.sum(rollups.c[name]) for name in columns))
        .where(*scope.rollup_where())
        .group_by(rollups.c.day, rollups.c.model_id)
    )

    def build(folded_through: int):
        day = utc_day(records.c.created_at)
        unfolded = (
            select(
                day,
                records.c.model_id,
                func.count(),
                func.sum(records.c.cost),
                func.sum(records.c.list_cost),
                list_unpriced(),
            )
            .where(*scope.unfolded_where(folded_through))
            .group_by(day, records.c.model_id)
        )
        return union_all(folded, unfolded)

    names = ("requests", "cost_nanocredits", "list_cost_nanocredits", "list_unpriced")
    result: dict[tuple[date, str], Totals] = {}
    for day, model, *sums in _consistent(build):
        group = result.setdefault((day, model), Totals())
        for name, value in zip(names, sums, strict=True):
            setattr(group, name, getattr(group, name) + int(value or 0))
    return result


def models_used(account_id: int, first_day: date, last_day: date) -> list[str]:
    """The models the account used on those UTC days, for the model filter."""
    scope = UsageScope(account_id, first_day, last_day)

    def build(folded_through: int):
        return union_all(
            select(rollups.c.model_id).where(*scope.rollup_where()).distinct(),
            select(records.c.model_id).where(*scope.unfolded_where(folded_through)).distinct(),
        )

    return sorted({row[0] for row in _consistent(build)})


@dataclass
class LogPage:
    records: list[UsageRecord]
    newer_than: int | None  # the id to page to newer records from, when there are some
    older_than: int | None  # the id to page to older records from, when there are some


class UnknownCursor(LookupError):
    """A page cursor that names no usage record of the account."""


def _cursor(account_id: int, record_id: int) -> tuple[datetime, int]:
    created_at = db.session.scalar(
        select(UsageRecord.created_at).where(
            UsageRecord.id == record_id, UsageRecord.account_id == account_id
        )
    )
    if created_at is None:
        raise UnknownCursor(record_id)
    return created_at, record_id


def log_page(
    scope: UsageScope, *, before: int | None = None, after: int | None = None, size: int = 50
) -> LogPage:
    """The scope's records newest first, `size` of them: the newest, those just older than the
    record `before`, or those just newer than the record `after`. Raises UnknownCursor.

    One more record than shown is read to know whether the log goes on in the direction read;
    the other direction is where the reader came from, so its nearest record is close by.
    """
    # The log shows no prices: their JSON is not read (the detail view reads it).
    unread = (defer(UsageRecord.prices_applied), defer(UsageRecord.estimate_basis))
    if after is not None:
        query = (
            select(UsageRecord)
            .options(*unread)
            .where(*scope.record_where(after=_cursor(scope.account_id, after)))
            .order_by(UsageRecord.created_at.asc(), UsageRecord.id.asc())
        )
    else:
        cursor = _cursor(scope.account_id, before) if before is not None else None
        query = (
            select(UsageRecord)
            .options(*unread)
            .where(*scope.record_where(before=cursor))
            .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())
        )
    rows = list(db.session.scalars(query.limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    if after is not None:
        rows.reverse()
    if not rows:
        return LogPage([], None, None)
    newest, oldest = rows[0], rows[-1]
    if after is not None:
        has_newer = more
        has_older = _exists(scope.record_where(before=(oldest.created_at, oldest.id)))
    else:
        has_older = more
        has_newer = before is not None and _exists(
            scope.record_where(after=(newest.created_at, newest.id))
        )
    return LogPage(rows, newest.id if has_newer else None, oldest.id if has_older else None)


def _exists(where: list) -> bool:
    return bool(db.session.scalar(select(exists().where(*where))))


def record_of(account_id: int, record_id: int) -> UsageRecord | None:
    """One of the account's usage records, or None (also for another account's)."""
    return db.session.scalar(
        select(UsageRecord).where(UsageRecord.id == record_id, UsageRecord.account_id == account_id)
    )


@dataclass(frozen=True)
class CostLine:
    token_class: str
    tokens: int
    price_nanocredits: int | None  # per million tokens; None when the record names no price
    amount_credits: str | None  # tokens × price / 10^6 nanocredits, in credits, exactly


def cost_lines(record: UsageRecord) -> tuple[list[CostLine], int | None]:
    """How the record's cost was computed: each billed class's tokens, price and exact amount,
    and the sum rounded half-up once to nanocredits (None when a price is missing)."""
    prices = record.prices_applied or {}
    lines = []
    numerator = 0
    complete = True
    for token_class, column in BILLED_COLUMNS.items():
        tokens = getattr(record, column)
        price = prices.get(token_class)
        if isinstance(price, int) and not isinstance(price, bool):
            numerator += tokens * price
            lines.append(CostLine(token_class, tokens, price, _exact(tokens * price, 15)))
        else:
            complete = complete and tokens == 0
            lines.append(CostLine(token_class, tokens, None, None))
    return lines, div_half_up(numerator, 10**6) if complete else None


def _exact(units: int, decimals: int) -> str:
    """units / 10^decimals as a plain decimal string, trailing zeros dropped."""
    whole, frac = divmod(units, 10**decimals)
    frac_text = f"{frac:0{decimals}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


# --- CSV export --------------------------------------------------------------------------------

CSV_HEADER = (
    "time_utc",
    "request_id",
    "key_name",
    "model",
    "provider",
    "route",
    "streamed",
    "status",
    *TOKEN_COLUMNS,
    "cost_credits",
    "latency_ms",
    "time_to_first_token_ms",
)
EXPORT_BATCH = 5_000
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def exact_credits(nanocredits: int) -> str:
    """Credits with all nine decimals, never rounded: 1_500_000 -> '0.001500000'."""
    sign = "-" if nanocredits < 0 else ""
    whole, frac = divmod(abs(nanocredits), NANOS_PER_CREDIT)
    return f"{sign}{whole}.{frac:09d}"


def _cell(text: str) -> str:
    """A customer-chosen text (a key's name) made safe to open in a spreadsheet."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_csv(
    engine: Engine, scope: UsageScope, key_names: dict[int, str], *, batch: int | None = None
) -> Iterator[bytes]:
    """The scope's records as CSV, oldest first, in chunks of `batch` rows.

    Each batch is its own short read on a pooled connection, found by keyset from the last row
    of the one before, so memory stays constant however many rows there are, no connection is
    held while the client reads, and no transaction stays open (on SQLite one would hold the
    write lock the proxy's settlements wait for). `batch` defaults to EXPORT_BATCH.
    """
    batch = batch or EXPORT_BATCH
    columns = (
        records.c.created_at,
        records.c.id,
        records.c.request_id,
        records.c.api_key_id,
        records.c.model_id,
        records.c.provider,
        records.c.route,
        records.c.streamed,
        records.c.status,
        *(records.c[name] for name in TOKEN_COLUMNS),
        records.c.cost,
        records.c.latency_ms,
        records.c.time_to_first_token_ms,
    )

    def query(cursor):
        return (
            select(*columns)
            .where(*scope.record_where(after=cursor))
            .order_by(records.c.created_at.asc(), records.c.id.asc())
            .limit(batch)
        )

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    cursor = None
    while True:
        with engine.connect() as connection:
            rows = connection.execute(query(cursor)).all()
        for row in rows:
            (created_at, _, request_id, key_id, model, provider, route, streamed, status) = row[:9]
            tokens = row[9 : 9 + len(TOKEN_COLUMNS)]
            cost, latency, ttft = row[9 + len(TOKEN_COLUMNS) :]
            writer.writerow(
                (
                    created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    request_id,
                    _cell(key_names.get(key_id, "")) if key_id is not None else "",
                    model,
                    provider,
                    route,
                    "true" if streamed else "false",
                    status,
                    *tokens,
                    exact_credits(cost),
                    "" if latency is None else latency,
                    "" if ttft is None else ttft,
                )
            )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < batch:
            return
        cursor = (rows[-1][0], rows[-1][1])
