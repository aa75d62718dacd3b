"""Daily usage rollups, folded from the usage records by a scheduled job (never by settlement).

The rollups hold exactly the records with id <= the watermark; readers add the raw records above
it (app/services/usage_stats.py), so what they show is exact and current whatever the job's lag.

Ids are handed out when a record is inserted, not when it commits, so a record may become
visible after records with higher ids (two settlements committing out of order). Two guards keep
the watermark honest:
- a fold takes only records older than FOLD_DELAY (created_at is the settlement's own time, and a
  settlement commits within its one statement), so every lower id has long committed;
- each run counts the ranges folded in the last RECHECK_WINDOW again: a record that still
  appeared in one (a settlement slower than the delay) makes its count differ, and the days of
  that range's accounts are rebuilt from the raw records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, Select, cast, delete, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import UsageDailyRollup, UsageRecord, UsageRollupFold, UsageRollupState
from app.models.types import utcnow
from app.models.usage_rollups import NO_KEY

FOLD_DELAY = timedelta(minutes=2)
RECHECK_WINDOW = timedelta(minutes=15)
FOLD_RETENTION = timedelta(days=1)
# Ids per fold transaction: on SQLite a fold holds the write lock, so the first fold of a large
# table is taken in steps the proxy's settlements can pass between.
FOLD_CHUNK_IDS = 50_000
STATE_ID = 1

records = UsageRecord.__table__
rollups = UsageDailyRollup.__table__

SUMMED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
)
GROUP = ("account_id", "day", "api_key_id", "provider", "model_id", "status")
# Rollup columns of the records' list cost: its sum, and how many records have none.
LIST_COST = ("list_cost", "list_unpriced")
ADDED = ("requests", *SUMMED, *LIST_COST)


def utc_day(column):
    """The UTC day of a timestamp column, as the rollups' `day` (naive UTC is stored)."""
    if db.engine.dialect.name == "sqlite":
        return func.date(column, type_=Date)
    return cast(column, Date)


def record_key():
    """A record's key id for the rollups: NO_KEY for a record made without a key. A literal, not
    a parameter: PostgreSQL matches GROUP BY expressions by their text, and two parameters of
    one value are two expressions to it."""
    return func.coalesce(records.c.api_key_id, literal_column(str(NO_KEY)))


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def list_unpriced():
    """How many of the grouped usage records have no list cost."""
    return func.count() - func.count(records.c.list_cost)


def _aggregate(where) -> Select:
    """The rollup rows of the usage records matching `where`, one per group."""
    key = record_key()
    day = utc_day(records.c.created_at)
    return (
        select(
            records.c.account_id,
            day,
            key,
            records.c.provider,
            records.c.model_id,
            records.c.status,
            func.count(),
            *(func.sum(records.c[name]) for name in SUMMED),
            func.coalesce(func.sum(records.c.list_cost), 0),
            list_unpriced(),
        )
        .where(*where)
        .group_by(records.c.account_id, day, key, records.c.provider, records.c.model_id)
        .group_by(records.c.status)
    )


def _insert(table):
    """INSERT with the dialect's ON CONFLICT clauses (PostgreSQL and SQLite spell them alike)."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _add_to_rollups(where) -> None:
    """Add the records matching `where` to the rollups (an upsert that sums into each group)."""
    statement = _insert(rollups).from_select([*GROUP, *ADDED], _aggregate(where))
    statement = statement.on_conflict_do_update(
        index_elements=list(GROUP),
        set_={name: rollups.c[name] + statement.excluded[name] for name in ADDED},
    )
    db.session.execute(statement)


def watermark(*, lock: bool = False) -> int:
    """The id through which the rollups hold every usage record (0 before the first fold).

    With `lock`, its row is share-locked until the transaction ends (PostgreSQL; SQLite's
    transactions are serialised already), so no fold moves it meanwhile.
    """
    query = select(UsageRollupState.folded_through_id).where(UsageRollupState.id == STATE_ID)
    if lock:
        query = query.with_for_update(read=True)
    return db.session.scalar(query) or 0


def _locked_watermark() -> int:
    """The watermark, its row locked until the transaction ends, so folds never overlap."""
    db.session.execute(
        _insert(UsageRollupState.__table__)
        .values(id=STATE_ID, folded_through_id=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
    )
    return db.session.scalar(
        select(UsageRollupState.folded_through_id)
        .where(UsageRollupState.id == STATE_ID)
        .with_for_update()
    )


def fold_next_chunk(now: datetime | None = None, *, delay: timedelta = FOLD_DELAY) -> int:
    """Fold the next run of unfolded records older than `delay` into the rollups and move the
    watermark past them; returns how many were folded (0: nothing old enough is left).

    Flushes; the caller commits (one chunk per transaction).
    """
    now = now or utcnow()
    folded_through = _locked_watermark()
    first = db.session.scalar(select(func.min(records.c.id)).where(records.c.id > folded_through))
    if first is None:
        return 0
    last = db.session.scalar(
        select(func.max(records.c.id)).where(
            records.c.id >= first,
            records.c.id < first + FOLD_CHUNK_IDS,
            records.c.created_at < now - delay,
        )
    )
    if last is None:
        return 0
    in_range = (records.c.id > folded_through, records.c.id <= last)
    # Counted before the fold, never after: a record committing in between is then folded but
    # not counted, and the recheck's count finds it (rebuilding its day, exactly); counted after,
    # a record committing between the fold and the count would be counted, never folded.
    count = db.session.scalar(select(func.count()).where(*in_range))
    _add_to_rollups(in_range)
    db.session.add(
        UsageRollupFold(first_id=folded_through, last_id=last, records=count, folded_at=now)
    )
    db.session.execute(
        update(UsageRollupState)
        .where(UsageRollupState.id == STATE_ID)
        .values(folded_through_id=last, updated_at=now)
    )
    db.session.flush()
    return count


@dataclass(frozen=True)
class Recheck:
    late_records: int  # records found in ranges already folded
    days_rebuilt: int


def recheck_recent_folds(now: datetime | None = None) -> Recheck:
    """Count the recently folded ranges again; rebuild, from the raw records, the days of any
    range that gained records after it was folded. Flushes; the caller commits.

    Also forgets folds older than FOLD_RETENTION.
    """
    now = now or utcnow()
    folded_through = _locked_watermark()
    db.session.execute(
        delete(UsageRollupFold).where(UsageRollupFold.folded_at < now - FOLD_RETENTION)
    )
    recount = (
        select(func.count())
        .where(records.c.id > UsageRollupFold.first_id, records.c.id <= UsageRollupFold.last_id)
        .scalar_subquery()
    )
    changed = db.session.execute(
        select(UsageRollupFold, recount).where(UsageRollupFold.folded_at >= now - RECHECK_WINDOW)
    ).all()
    late = 0
    days: set[tuple[int, date]] = set()
    for fold, count in changed:
        if count == fold.records:
            continue
        late += count - fold.records
        days.update(
            db.session.execute(
                select(records.c.account_id, utc_day(records.c.created_at))
                .where(records.c.id > fold.first_id, records.c.id <= fold.last_id)
                .distinct()
            ).all()
        )
        fold.records = count
    for account_id, day in sorted(days):
        rebuild_day(account_id, day, folded_through)
    db.session.flush()
    return Recheck(late_records=late, days_rebuilt=len(days))


def rebuild_day(account_id: int, day: date, folded_through: int) -> None:
    """Recompute one account's rollups of one UTC day from its records with id <= folded_through."""
    db.session.execute(
        delete(UsageDailyRollup).where(
            UsageDailyRollup.account_id == account_id, UsageDailyRollup.day == day
        )
    )
    _add_to_rollups(
        (
            records.c.account_id == account_id,
            records.c.created_at >= day_start(day),
            records.c.created_at < day_start(day + timedelta(days=1)),
            records.c.id <= folded_through,
        )
    )
