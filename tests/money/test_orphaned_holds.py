"""Issue 9 #9: the holds of a web process that died are released within about two minutes (its
heartbeat missing for a TTL at two sweeps), and a live request's hold never is."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from app import heartbeat
from app.extensions import db, get_redis
from app.models import Account, Hold
from app.models.types import utcnow
from app.services import ledger
from app.tasks.maintenance import release_orphaned_holds_job

CREDIT = 1_000_000_000
LIVE, DEAD = "a1b2c3d4", "deadbeef"


@pytest.fixture
def account_id(app, make_account):
    account_id = make_account("customer@example.com")
    with app.app_context():
        ledger.grant_credits(account_id, 10 * CREDIT, note="n", idempotency_key="g")
        db.session.commit()
    return account_id


def _hold(app, account_id: int, request_id: str | None, *, age_seconds: float = 120) -> int:
    with app.app_context():
        hold = ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=2 * CREDIT,
            expires_at=utcnow() + timedelta(hours=1),
            request_id=request_id,
        )
        db.session.execute(
            update(Hold)
            .where(Hold.id == hold.id)
            .values(created_at=utcnow() - timedelta(seconds=age_seconds))
        )
        db.session.commit()
        return hold.id


def _sweep(app, *, seconds_later: float = 0) -> int:
    """One sweep; `seconds_later` moves every noted suspicion that far into the past first."""
    with app.app_context():
        redis = get_redis()
        for name in redis.scan_iter(heartbeat.SUSPECT_KEY.format("*")):
            redis.set(name, repr(float(redis.get(name)) - seconds_later))
        released = release_orphaned_holds_job()
        db.session.remove()
        return released


def _status(app, hold_id: int) -> str:
    with app.app_context():
        status = db.session.get(Hold, hold_id).status
        db.session.remove()
        return status


def _beat(app, token: str) -> None:
    with app.app_context():
        get_redis().set(heartbeat.ALIVE_KEY.format(token), 1, ex=30)


def test_a_dead_processs_holds_are_released_after_a_ttl_seen_at_two_sweeps(app, account_id):
    orphan = _hold(app, account_id, f"{DEAD}-0001")
    assert _sweep(app) == 0  # first seen missing: noted, not released
    assert _sweep(app, seconds_later=10) == 0  # missing for less than a TTL (30 s)
    assert _sweep(app, seconds_later=30) == 1
    assert _status(app, orphan) == "expired"
    with app.app_context():
        assert db.session.get(Account, account_id).held_nanocredits == 0
        assert ledger.check_invariants() == []
        # A late settlement (the request did finish somewhere) still debits, once.
        assert ledger.settle_hold(orphan, CREDIT) is True
        db.session.commit()
        assert db.session.get(Account, account_id).balance_nanocredits == 9 * CREDIT
        assert ledger.check_invariants() == []


def test_a_live_processs_hold_is_never_released(app, account_id):
    _beat(app, LIVE)
    live = _hold(app, account_id, f"{LIVE}-0001", age_seconds=3 * 3600)
    for _ in range(3):
        assert _sweep(app, seconds_later=3600) == 0
    assert _status(app, live) == "open"


def test_a_process_beating_again_is_forgotten(app, account_id):
    """Redis restarted (every heartbeat lost): the processes beat again before a TTL passes."""
    hold_id = _hold(app, account_id, f"{LIVE}-0001")
    assert _sweep(app) == 0
    _beat(app, LIVE)
    assert _sweep(app, seconds_later=60) == 0
    with app.app_context():
        get_redis().delete(heartbeat.ALIVE_KEY.format(LIVE))
    assert _sweep(app, seconds_later=60) == 0  # noted afresh
    assert _status(app, hold_id) == "open"


def test_young_holds_and_holds_of_no_process_wait(app, account_id):
    young = _hold(app, account_id, f"{DEAD}-0001", age_seconds=1)
    operator = _hold(app, account_id, None)
    other_shape = _hold(app, account_id, "0123456789abcdef01234567")
    for _ in range(2):
        assert _sweep(app, seconds_later=60) == 0
    assert {_status(app, h) for h in (young, operator, other_shape)} == {"open"}


def test_request_ids_name_the_process_that_beats(app, client):
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    token = heartbeat.token_of(first)
    assert token is not None and token == heartbeat.token_of(second) and first != second
    # The process beats every HEARTBEAT_INTERVAL_SECONDS (each test empties Redis after it).
    deadline = time.monotonic() + app.config["HEARTBEAT_INTERVAL_SECONDS"] + 2
    with app.app_context():
        alive = heartbeat.ALIVE_KEY.format(token)
        while not get_redis().exists(alive):
            assert time.monotonic() < deadline, "this process does not beat"
            time.sleep(0.1)
        assert 0 < get_redis().ttl(alive) <= app.config["HEARTBEAT_TTL_SECONDS"]
