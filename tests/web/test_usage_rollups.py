"""Issue 10 item 4: the daily rollups behind the usage page's totals and chart are exact.

The rollups hold the records up to a watermark id and the page adds the raw records above it, so
every figure must equal the raw records' own sums: before the first fold, after it, with records
too young to fold, across chunks, and when a record commits after higher ids were folded (a slow
settlement), which the next run must find and fold in.
"""

from __future__ import annotations

import os
import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text

from app.extensions import db
from app.models import Account, UsageDailyRollup, UsageRecord, UsageRollupFold
from app.models.types import utcnow
from app.services import holds, usage_rollups
from app.services.keys import create_key
from app.services.ledger import grant_credits, place_hold
from app.services.usage_rollups import watermark
from app.services.usage_stats import UsageScope
from app.tasks.usage import fold_usage_job
from tests.web.usage_records import (
    add_usage,
    raw_daily,
    raw_totals,
    service_daily,
    service_totals,
)

MODELS = (("gpt-4o-mini", "openai"), ("claude-haiku-4-5", "anthropic"), ("grok-4", "xai"))
STATUSES = ("ok", "ok", "ok", "partial", "estimated", "upstream_error")


def seed(app, make_account, count: int = 240, *, seed_value: int = 10) -> tuple[int, int, list]:
    """Two accounts' records over the last 12 days (a few minutes young); (account, other, keys)."""
    rng = random.Random(seed_value)
    account_id = make_account("user@example.com")
    other_id = make_account("other@example.com")
    with app.app_context():
        account = db.session.get(Account, account_id)
        keys = [create_key(account, name=f"k{n}")[0].id for n in range(2)] + [None]
        other_key = create_key(db.session.get(Account, other_id), name="theirs")[0].id
        now = utcnow()
        rows = []
        for n in range(count):
            model, provider = rng.choice(MODELS)
            young = n % 10 == 0  # newer than the fold delay: stays above the watermark
            age = (
                timedelta(seconds=rng.randint(1, 60))
                if young
                else timedelta(
                    days=rng.randint(0, 11), hours=rng.randint(0, 23), minutes=rng.randint(3, 59)
                )
            )
            mine = n % 7 != 0
            rows.append(
                dict(
                    account_id=account_id if mine else other_id,
                    key_id=rng.choice(keys) if mine else other_key,
                    model=model,
                    provider=provider,
                    status=rng.choice(STATUSES),
                    cost=rng.randint(0, 5_000_000_000),
                    at=now - age,
                    input_tokens=rng.randint(0, 200_000),
                    cache_read_tokens=rng.randint(0, 50_000),
                    cache_write_5m_tokens=rng.randint(0, 3_000),
                    cache_write_1h_tokens=rng.randint(0, 3_000),
                    output_tokens=rng.randint(0, 30_000),
                    reasoning_tokens=rng.randint(0, 500),
                )
            )
        # As settlements write them: ids in the order of their times.
        for row in sorted(rows, key=lambda row: row["at"]):
            add_usage(row.pop("account_id"), row.pop("key_id"), **row)
        db.session.commit()
    return account_id, other_id, keys


def scopes(account_id: int, keys: list) -> list[UsageScope]:
    today = utcnow().date()
    wide = dict(account_id=account_id, first_day=today - timedelta(days=29), last_day=today)
    return [
        UsageScope(**wide),
        UsageScope(account_id, today, today),
        UsageScope(account_id, today - timedelta(days=6), today - timedelta(days=2)),
        UsageScope(**wide, key_id=keys[0]),
        UsageScope(**wide, model_id="grok-4"),
        UsageScope(**wide, provider="anthropic"),
        UsageScope(**wide, status="estimated"),
        UsageScope(**wide, key_id=keys[1], provider="openai", status="ok"),
        UsageScope(account_id, today + timedelta(days=1), today + timedelta(days=3)),
    ]


def assert_exact(app, account_id: int, keys: list) -> None:
    with app.app_context():
        for scope in scopes(account_id, keys):
            assert service_totals(scope) == raw_totals(scope), scope
            for stack in ("model", "key"):
                assert service_daily(scope, stack) == raw_daily(scope, stack), (scope, stack)


def test_item4_figures_equal_the_raw_records_before_and_after_folding(app, make_account):
    account_id, _, keys = seed(app, make_account)
    assert_exact(app, account_id, keys)  # nothing folded: all raw
    with app.app_context():
        report = fold_usage_job()
        young = db.session.scalar(
            select(func.count()).where(UsageRecord.created_at > utcnow() - timedelta(minutes=2))
        )
        assert report["folded"] == 240 - young
        assert db.session.scalar(select(func.count()).select_from(UsageDailyRollup)) > 0
        assert young > 0 and watermark() < db.session.scalar(select(func.max(UsageRecord.id)))
    assert_exact(app, account_id, keys)  # rollups + young raw records
    with app.app_context():
        assert fold_usage_job()["folded"] == 0  # nothing new old enough
    assert_exact(app, account_id, keys)


def test_item4_everything_folded_still_adds_up_and_a_second_fold_adds_new_records_only(
    app, make_account
):
    account_id, _, keys = seed(app, make_account, count=120, seed_value=3)
    with app.app_context():
        usage_rollups.fold_next_chunk(delay=timedelta(0))
        db.session.commit()
        assert watermark() == db.session.scalar(select(func.max(UsageRecord.id)))
    assert_exact(app, account_id, keys)
    with app.app_context():
        add_usage(account_id, keys[0], cost=123_456_789, at=utcnow() - timedelta(hours=2))
        db.session.commit()
        usage_rollups.fold_next_chunk(delay=timedelta(0))
        db.session.commit()
    assert_exact(app, account_id, keys)


def test_item4_a_large_backlog_is_folded_in_chunks(app, make_account, monkeypatch):
    account_id, _, keys = seed(app, make_account, count=60, seed_value=5)
    monkeypatch.setattr(usage_rollups, "FOLD_CHUNK_IDS", 7)
    with app.app_context():
        report = fold_usage_job()
        folds = db.session.scalars(select(UsageRollupFold).order_by(UsageRollupFold.first_id)).all()
        assert len(folds) >= 60 // 7
        assert sum(f.records for f in folds) == report["folded"]
        # The folds tile the ids: each starts where the one before ended.
        assert [f.first_id for f in folds[1:]] == [f.last_id for f in folds[:-1]]
    assert_exact(app, account_id, keys)


def test_item4_a_record_committed_after_higher_ids_were_folded_is_found_and_folded(
    app, make_account
):
    """Ids 1-5 and 7 are folded while 6 is still being settled; 6 then commits, a day old."""
    account_id = make_account("user@example.com")
    old = utcnow() - timedelta(days=1)
    with app.app_context():
        for record_id in (1, 2, 3, 4, 5, 7):
            add_usage(account_id, cost=1_000, at=old, record_id=record_id)
        db.session.commit()
        assert fold_usage_job()["folded"] == 6
        assert watermark() == 7
        add_usage(account_id, cost=50_000, at=old, record_id=6, model="grok-4", provider="xai")
        db.session.commit()
        scope = UsageScope(account_id, old.date(), utcnow().date())
        # Below the watermark and not yet in the rollups: the recheck is what brings it in.
        assert service_totals(scope)["requests"] == 6
        report = fold_usage_job()
        assert report["late_records"] == 1 and report["days_rebuilt"] == 1
        assert service_totals(scope) == raw_totals(scope)
        assert service_totals(scope)["cost_nanocredits"] == 56_000
        assert service_daily(scope, "model") == raw_daily(scope, "model")
        assert fold_usage_job()["late_records"] == 0  # the fold's count was corrected


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"),
    reason="SQLite serialises writers (BEGIN IMMEDIATE): its ids always commit in order",
)
def test_item4_a_real_out_of_order_commit_on_postgresql_is_folded_exactly(app, make_account):
    """A settlement's transaction takes an id and commits after a later one was folded."""
    account_id = make_account("user@example.com")
    old = utcnow() - timedelta(minutes=30)
    slow = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    insert = text(
        "INSERT INTO usage_records (account_id, request_id, provider, model_id, route, status,"
        " streamed, input_tokens, cache_read_tokens, cache_write_5m_tokens,"
        " cache_write_1h_tokens, output_tokens, reasoning_tokens, cost, prices_applied,"
        " created_at) VALUES (:a, 'slow', 'openai', 'gpt-4o-mini', 'chat.completions', 'ok',"
        " false, 1, 0, 0, 0, 1, 0, :cost, '{}', :at) RETURNING id"
    )
    try:
        with slow.connect() as connection:
            transaction = connection.begin()
            slow_id = connection.execute(
                insert, {"a": account_id, "cost": 777, "at": old.replace(tzinfo=None)}
            ).scalar()
            with app.app_context():
                fast_id = add_usage(account_id, cost=1_000, at=old)
                db.session.commit()
                assert fast_id > slow_id
                assert fold_usage_job()["folded"] == 1
                assert watermark() == fast_id
            transaction.commit()
        with app.app_context():
            scope = UsageScope(account_id, old.date(), utcnow().date())
            assert fold_usage_job()["late_records"] == 1
            assert service_totals(scope) == raw_totals(scope)
            assert service_totals(scope)["cost_nanocredits"] == 1_777
    finally:
        slow.dispose()


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"),
    reason="SQLite serialises transactions (BEGIN IMMEDIATE): no fold commits during a read",
)
def test_item4_a_fold_committing_between_the_reads_is_not_counted_twice(
    app, make_account, monkeypatch
):
    """The watermark is read, a fold commits (moving it past records the read will also take
    from the raw side), then the figures are read: the moved watermark makes the read run again."""
    from app.services import usage_stats

    account_id = make_account("user@example.com")
    with app.app_context():
        for n in range(5):
            add_usage(account_id, cost=1_000 + n)
        db.session.commit()
    calls = []

    def watermark_then_fold(**kwargs):
        value = watermark(**kwargs)
        if not calls:
            folder = threading.Thread(target=fold_in_another_session)
            folder.start()
            folder.join()
        calls.append(value)
        return value

    def fold_in_another_session():
        with app.app_context():
            assert fold_usage_job()["folded"] == 5

    monkeypatch.setattr(usage_stats, "watermark", watermark_then_fold)
    with app.app_context():
        scope = UsageScope(account_id, utcnow().date() - timedelta(days=1), utcnow().date())
        assert service_totals(scope)["cost_nanocredits"] == 5_010
        assert service_totals(scope) == raw_totals(scope)
    assert calls[:3] == [0, 5, 5]  # read, moved, read again (then unchanged)


def test_item4_records_written_by_settlement_fold_exactly(app, make_account):
    """The records the proxy writes (the settlement's own statement) fold like any other."""
    account_id = make_account("user@example.com")
    with app.app_context():
        grant_credits(account_id, 10**12, note="t", idempotency_key="g")
        key, _ = create_key(db.session.get(Account, account_id), name="k")
        for n in range(3):
            hold = place_hold(
                account_id=account_id,
                api_key_id=key.id,
                amount_nanocredits=10**9,
                expires_at=utcnow() + timedelta(hours=1),
            )
            hold_id, key_id = hold.id, key.id
            db.session.commit()  # the settlement below is a transaction of its own
            holds.settle(
                hold_id,
                123_457 + n,
                usage={
                    "account_id": account_id,
                    "api_key_id": key_id,
                    "hold_id": hold_id,
                    "request_id": f"req-{n}",
                    "provider": "openai",
                    "model_id": "gpt-4o-mini",
                    "route": "chat.completions",
                    "status": "ok",
                    "input_tokens": 100 + n,
                    "output_tokens": 10,
                    "cost_nanocredits": 123_457 + n,
                    "prices_applied": {},
                },
            )
        # Settled now: old enough only once the delay is waived.
        assert usage_rollups.fold_next_chunk() == 0
        assert usage_rollups.fold_next_chunk(delay=timedelta(0)) == 3
        db.session.commit()
        scope = UsageScope(account_id, utcnow().date(), utcnow().date())
        assert service_totals(scope) == raw_totals(scope)
        assert service_totals(scope)["cost_nanocredits"] == 3 * 123_457 + 3
        assert service_daily(scope, "key") == {(utcnow().date(), key_id): (3, 370_374)}


def test_item4_the_scheduler_runs_the_fold_every_minute(app):
    from rq.cron import CronScheduler

    from worker import register_cron_jobs

    scheduler = CronScheduler(connection=app.extensions["onekey_redis"])
    register_cron_jobs(scheduler)
    jobs = {job.func.__name__: job for job in scheduler.get_jobs()}
    assert jobs["fold_usage_job"].interval == 60
    assert jobs["fold_usage_job"].queue_name == "default"


def test_item4_old_folds_are_forgotten(app, make_account):
    account_id = make_account("user@example.com")
    with app.app_context():
        add_usage(account_id)
        db.session.commit()
        fold_usage_job()
        assert db.session.scalar(select(func.count()).select_from(UsageRollupFold)) == 1
        usage_rollups.recheck_recent_folds(now=utcnow() + timedelta(days=2))
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(UsageRollupFold)) == 0
        assert watermark() == 1
