"""Settlement is exactly once, and survives a database that fails at the moment of settling."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.extensions import db, get_queue
from app.models import Account, Hold, LedgerEntry, UsageRecord
from app.proxy import exchange as exchange_module
from app.proxy import gateway
from app.proxy.metering import Usage
from app.services.ledger import check_invariants
from app.services.usage import record_usage
from tests.settlement import exchange_for, open_hold


def values_for(account_id: int, key_id: int, hold_id: int, cost: int = 1234) -> dict:
    return {
        "account_id": account_id,
        "api_key_id": key_id,
        "hold_id": hold_id,
        "request_id": "req",
        "provider": "openai",
        "model_id": "gpt-4o-mini",
        "route": "chat.completions",
        "status": "ok",
        "streamed": False,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_nanocredits": cost,
        "prices_applied": {},
    }


def test_a_hold_is_settled_once_whoever_tries(app, make_account):
    account_id = make_account("user@example.com")
    hold_id, key_id = open_hold(app, account_id)
    with app.app_context():
        assert record_usage(values_for(account_id, key_id, hold_id)) is True
        db.session.commit()
        assert record_usage(values_for(account_id, key_id, hold_id)) is False
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(UsageRecord)) == 1
        debits = db.session.scalars(
            select(LedgerEntry.amount_nanocredits).where(LedgerEntry.kind == "usage")
        ).all()
        assert debits == [-1234]
        assert check_invariants() == []


def test_settlement_is_queued_when_the_database_fails_and_done_by_the_worker(
    app, make_account, monkeypatch
):
    account_id = make_account("user@example.com")
    hold_id, key_id = open_hold(app, account_id)
    exchange = exchange_for(account_id, key_id, hold_id)

    class Relay:
        usage = Usage(input=1000, output=2000, prompt_tokens=1000)
        usage_complete = True
        finished = True
        failed = False
        delivered_bytes = 10

    def database_gone(values):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(exchange_module, "record_usage", database_gone)
    with app.test_request_context():
        cost = gateway.settle(app, exchange, Relay(), "ok")
    assert cost == 1_485_000  # 1000 × 0.165 + 2000 × 0.66 credits per million tokens
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "open"
        queue = get_queue("billing")
        assert queue.count == 1
        monkeypatch.undo()
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "settled"
        record = db.session.scalar(select(UsageRecord))
        assert record.cost_nanocredits == 1_485_000
        assert record.list_cost_nanocredits == 1_350_000  # at the list prices, 0.15 and 0.6
        account = db.session.get(Account, account_id)
        assert account.balance_nanocredits == 1_000_000 - 1_485_000
        assert account.flagged_reason == "negative balance"
        assert check_invariants() == []


@pytest.mark.parametrize("status", ["ok", "partial", "estimated", "upstream_error"])
def test_usage_record_statuses_are_the_documented_ones(status):
    from app.models.usage import USAGE_STATUSES

    assert status in USAGE_STATUSES


def test_a_provider_error_before_anything_was_delivered_is_an_upstream_error(app, make_account):
    account_id = make_account("user@example.com")
    hold_id, key_id = open_hold(app, account_id)
    exchange = exchange_for(account_id, key_id, hold_id, stream=True)

    class Relay:  # the provider's in-stream error was the first thing it sent
        usage = None
        usage_complete = False
        finished = False
        failed = True
        delivered_bytes = 0

    with app.test_request_context():
        assert gateway.settle(app, exchange, Relay(), "ok") == 0
    with app.app_context():
        record = db.session.scalar(select(UsageRecord))
        assert (record.status, record.cost_nanocredits) == ("upstream_error", 0)
        assert db.session.get(Hold, hold_id).status == "settled"
        assert check_invariants() == []
