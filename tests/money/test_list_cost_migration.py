"""Issue 11 item 1: migration 0014 gives the usage records made before it their list cost.

A database of its own (SQLite file, or a PostgreSQL database beside the run's), migrated to 0013,
seeded with raw SQL as the schema was then, then upgraded: each record's list cost is its tokens
at the current list prices of the tier its prices_applied names (a class without a price at the
input price), rounded half-up once; a record whose model has no prices at that tier keeps NULL;
the rollups are emptied and folded again, carrying the list cost.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.models import UsageDailyRollup, UsageRecord
from app.models.types import utcnow
from app.services import usage_rollups
from app.services.money import NANOS_PER_CREDIT
from tests.conftest import _RUN_DIR, _postgres_database

C = NANOS_PER_CREDIT
# model-t's list prices per million tokens: base tier and above 1,000 prompt tokens; no
# cache_write_1h price (bills at the tier's input price).
BASE = {"input": 3 * C, "cache_read": C // 10, "cache_write_5m": 4 * C, "output": 15 * C}
LONG = {name: price * 2 for name, price in BASE.items()}


@pytest.fixture
def migration_app(redis_url):
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url, drop = _postgres_database(base)
    else:
        path = _RUN_DIR / "migration-0014.sqlite3"
        url, drop = f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "test-secret-key",
            "KEY_HASH_SECRET": "test-key-hash-secret",
            "MAIL_SMTP_URL": "",
        }
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    drop()


def _seed_at_0013(now) -> dict[str, int]:
    """A catalogue model with two tiers, one account, and four records as 0013 stored them;
    returns each record's id by name."""
    execute = db.session.execute
    execute(
        text(
            "INSERT INTO accounts (id, email, password_hash, is_admin, status, balance, held, "
            "session_version, terms_version, terms_accepted_at, age_attested_at, created_at) "
            "VALUES (1, 'a@example.com', 'x', false, 'active', 0, 0, 1, '1', :now, :now, :now)"
        ),
        {"now": now},
    )
    execute(
        text(
            "INSERT INTO catalog_models (id, provider, model_id, name, context_length, "
            "max_output_tokens, enabled, status, synced_at, version) "
            "VALUES (1, 'anthropic', 'model-t', 'T', 200000, 1000, true, 'active', :now, 1)"
        ),
        {"now": now},
    )
    for threshold, prices in ((0, BASE), (1_000, LONG)):
        for token_class, price in prices.items():
            execute(
                text(
                    "INSERT INTO model_prices (model_pk, tier_threshold_tokens, token_class, "
                    "list_price, sell_price) VALUES (1, :tier, :class, :price, :price * 2)"
                ),
                {"tier": threshold, "class": token_class, "price": price},
            )
    records = {
        # Base tier, every class (1h writes at the input price).
        "base": ("model-t", 0, (101, 7, 5, 3, 9)),
        # The long-context tier.
        "long": ("model-t", 1_000, (1_500, 0, 0, 0, 333)),
        # A tier the catalogue no longer has, and a model it never had: unknown.
        "gone_tier": ("model-t", 500_000, (10, 0, 0, 0, 10)),
        "unknown_model": ("model-x", 0, (10, 0, 0, 0, 10)),
    }
    ids = {}
    for n, (name, (model, tier, tokens)) in enumerate(records.items(), start=1):
        execute(
            text(
                "INSERT INTO usage_records (id, account_id, request_id, provider, model_id, route, "
                "status, streamed, input_tokens, cache_read_tokens, cache_write_5m_tokens, "
                "cache_write_1h_tokens, output_tokens, reasoning_tokens, cost, prices_applied, "
                "created_at) VALUES (:id, 1, :request, 'anthropic', :model, 'messages', 'ok', "
                "false, :i, :r, :w5, :w1, :o, 0, 1000, :prices, :at)"
            ),
            {
                "id": n,
                "request": f"req-{name}",
                "model": model,
                "i": tokens[0],
                "r": tokens[1],
                "w5": tokens[2],
                "w1": tokens[3],
                "o": tokens[4],
                "prices": f'{{"tier": {tier}, "input": 1}}',
                "at": now - timedelta(hours=1),
            },
        )
        ids[name] = n
    db.session.commit()
    return ids


def _half_up(numerator: int) -> int:
    return (numerator + 500_000) // 1_000_000


def test_issue11_item1_migration_0014_backfills_list_cost_and_refolds(migration_app):
    now = utcnow()
    with migration_app.app_context():
        upgrade(revision="0013")
        ids = _seed_at_0013(now)
        # Folded as 0013 folded them: no list cost in the rollups then.
        db.session.execute(
            text(
                "INSERT INTO usage_rollup_state (id, folded_through_id, updated_at) "
                "VALUES (1, 4, :now)"
            ),
            {"now": now},
        )
        db.session.execute(
            text(
                "INSERT INTO usage_daily_rollups (account_id, day, api_key_id, provider, model_id, "
                "status, requests, input_tokens, cache_read_tokens, cache_write_5m_tokens, "
                "cache_write_1h_tokens, output_tokens, reasoning_tokens, cost) "
                "VALUES (1, :day, 0, 'anthropic', 'model-t', 'ok', 3, 0, 0, 0, 0, 0, 0, 3000)"
            ),
            {"day": now.date()},
        )
        db.session.commit()

        upgrade()

        listed = {
            record.id: record.list_cost_nanocredits for record in db.session.query(UsageRecord)
        }
        assert listed[ids["base"]] == _half_up(
            101 * BASE["input"]
            + 7 * BASE["cache_read"]
            + 5 * BASE["cache_write_5m"]
            + 3 * BASE["input"]
            + 9 * BASE["output"]
        )
        assert listed[ids["long"]] == _half_up(1_500 * LONG["input"] + 333 * LONG["output"])
        assert listed[ids["gone_tier"]] is None
        assert listed[ids["unknown_model"]] is None
        # The rollups start again from nothing, and the next fold carries the list cost.
        assert db.session.query(UsageDailyRollup).count() == 0
        assert usage_rollups.watermark() == 0
        while usage_rollups.fold_next_chunk(now):
            db.session.commit()
        rollups = {r.model_id: r for r in db.session.query(UsageDailyRollup)}
        assert rollups["model-t"].requests == 3
        assert rollups["model-t"].list_cost_nanocredits == listed[ids["base"]] + listed[ids["long"]]
        assert rollups["model-t"].list_unpriced == 1
        assert rollups["model-x"].list_cost_nanocredits == 0
        assert rollups["model-x"].list_unpriced == 1
