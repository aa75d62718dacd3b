"""Issue 10 item 9, the money side of a key limit that resets (services/key_periods.py): holds
and settlements on a clock the test controls, across day, week and month boundaries.

Whatever the order of holds, settlements (below, at and above the hold, or of nothing) and
midnights, every cost is counted exactly once: in the lifetime usage, and in the spend of the
period it was settled in, never in another; a hold is placed only when the key's spend this
period, its open holds and the new hold stay within the limit. PostgreSQL runs the rule in the
hold and settlement statements; SQLite runs `decide` and the short transactions.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Account, ApiKey
from app.services import holds
from app.services import keys as key_service
from app.services.key_periods import period_start
from app.services.ledger import check_invariants
from tests.money.test_ledger_properties import new_account, reset_database, run_together

CREDIT = 10**9
LIMIT = 100
# A Sunday evening, an hour before a new day, week and month (2026-11-30 is a Monday).
START = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
SETTINGS = settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_emails = itertools.count()

steps = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.sampled_from([0, 1, 20, 59, 60 * 3, 60 * 24, 60 * 24 * 3])),
        st.tuples(st.just("hold"), st.integers(1, 60)),
        # Which open hold (an index into them, modulo) and what it costs: 0 is a release.
        st.tuples(st.just("settle"), st.tuples(st.integers(0, 10), st.integers(0, 90))),
    ),
    min_size=1,
    max_size=30,
)


def hold_request(account_id: int, key_id: int, amount: int, now: datetime) -> holds.HoldRequest:
    """A request whose whole bound is `amount` (no output price: the input cost is the bound)."""
    return holds.HoldRequest(
        account_id=account_id,
        key_id=key_id,
        input_cost=amount,
        output_price=0,
        requested_output=1,
        expires_at=now + timedelta(days=30),
    )


def read_key(key_id: int) -> ApiKey:
    """The key as committed, detached; the session's transaction is ended at once (on SQLite
    it would hold the write lock the next hold or settlement needs)."""
    db.session.rollback()
    key = db.session.get(ApiKey, key_id, populate_existing=True)
    db.session.expunge(key)
    db.session.rollback()
    return key


def spent_in_period(settled: list[tuple[datetime, int]], reset: str, now: datetime) -> int:
    start = period_start(reset, now)
    return sum(cost for when, cost in settled if when >= start)


@SETTINGS
@given(reset=st.sampled_from(["daily", "weekly", "monthly"]), plan=steps)
def test_issue10_9_holds_and_settlements_across_resets_count_every_cost_once(app, reset, plan):
    with app.app_context():
        reset_database()
        account_id = new_account(f"periods{next(_emails)}@example.com", 1000 * CREDIT)
        key = ApiKey(
            account_id=account_id,
            name="k",
            key_hash=f"{next(_emails):064d}",
            last4="abcd",
            limit_nanocredits=LIMIT,
            limit_reset=reset,
            period_started_at=period_start(reset, START),
        )
        db.session.add(key)
        db.session.commit()
        key_id = key.id
        db.session.rollback()
        now = START
        open_holds: list[tuple[int, int]] = []  # (hold id, amount)
        settled: list[tuple[datetime, int]] = []  # (when, cost)
        for action, value in plan:
            if action == "wait":
                now += timedelta(minutes=value)
            elif action == "hold":
                held = sum(amount for _, amount in open_holds)
                room = LIMIT - spent_in_period(settled, reset, now) - held
                outcome = holds.reserve(hold_request(account_id, key_id, value, now), now=now)
                if value <= room:
                    assert isinstance(outcome, holds.Reservation), (value, room, outcome)
                    assert outcome.amount == value
                    open_holds.append((outcome.hold_id, value))
                else:
                    assert isinstance(outcome, holds.Refusal), (value, room)
                    assert outcome.reason == "key_limit_reached"
                    assert outcome.key_remaining == room
            elif open_holds:
                index, cost = value
                hold_id, _ = open_holds.pop(index % len(open_holds))
                assert holds.settle(hold_id, cost, now=now)
                assert not holds.settle(hold_id, cost, now=now)  # exactly once
                settled.append((now, cost))
            row = read_key(key_id)
            assert row.usage_nanocredits == sum(cost for _, cost in settled)
            assert row.held_nanocredits == sum(amount for _, amount in open_holds)
            assert row.period_usage_at(now) == spent_in_period(settled, reset, now)
        assert check_invariants() == []


def daily_key(account_id: int) -> ApiKey:
    """A key limited to LIMIT a day, its stored period the day of START."""
    key, _ = key_service.create_key(
        db.session.get(Account, account_id),
        name="k",
        limit_nanocredits=LIMIT,
        limit_reset="daily",
    )
    key.period_started_at = period_start("daily", START)
    db.session.commit()
    return key


def test_issue10_9_a_cost_settled_after_midnight_counts_in_the_new_day_only(app):
    with app.app_context():
        reset_database()
        account_id = new_account("midnight@example.com", 10 * CREDIT)
        key_id = daily_key(account_id).id
        db.session.rollback()
        before_midnight = START + timedelta(minutes=30)
        after_midnight = START + timedelta(minutes=90)
        first = holds.reserve(hold_request(account_id, key_id, 40, START), now=START)
        assert holds.settle(first.hold_id, 40, now=before_midnight)
        straddling = holds.reserve(
            hold_request(account_id, key_id, 50, before_midnight), now=before_midnight
        )
        # Before midnight: 40 spent, 50 held, 10 left.
        assert read_key(key_id).period_usage_at(before_midnight) == 40
        refused = holds.reserve(
            hold_request(account_id, key_id, 11, before_midnight), now=before_midnight
        )
        assert refused.reason == "key_limit_reached" and refused.key_remaining == 10
        # After midnight: nothing spent yet; the open hold still counts.
        refused = holds.reserve(
            hold_request(account_id, key_id, 51, after_midnight), now=after_midnight
        )
        assert refused.reason == "key_limit_reached" and refused.key_remaining == 50
        assert holds.settle(straddling.hold_id, 30, now=after_midnight)
        key = read_key(key_id)
        assert key.usage_nanocredits == 70
        assert key.period_usage_at(after_midnight) == 30
        assert key.period_started_at == period_start("daily", after_midnight)
        assert key.period_usage_base_nanocredits == 40
        assert check_invariants() == []


def test_issue10_9_two_settlements_racing_at_midnight_roll_the_period_once(app):
    """The first settlement of the new day keeps its locks while the second waits for them: the
    second must find the period current and add its cost, not roll the period over again."""
    with app.app_context():
        reset_database()
        account_id = new_account("race-midnight@example.com", 10 * CREDIT)
        key_id = daily_key(account_id).id
        db.session.rollback()
        spent = holds.reserve(hold_request(account_id, key_id, 25, START), now=START)
        assert holds.settle(spent.hold_id, 25, now=START)
        first = holds.reserve(hold_request(account_id, key_id, 30, START), now=START).hold_id
        second = holds.reserve(hold_request(account_id, key_id, 30, START), now=START).hold_id
        # PostgreSQL settles in one statement; SQLite's transaction updates the key last.
        pause_after = (
            "WITH claimed" if db.engine.dialect.name == "postgresql" else "UPDATE api_keys"
        )
    after_midnight = START + timedelta(hours=2)

    def settle(hold_id: int, cost: int):
        return lambda: holds.settle(
            hold_id, cost, now=after_midnight, connection=db.session.connection()
        )

    results = run_together(
        app,
        {"first": settle(first, 10), "second": settle(second, 20)},
        pauses={"first": pause_after},
    )
    assert results == {"first": True, "second": True}, results
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        assert key.usage_nanocredits == 55
        assert key.held_nanocredits == 0
        assert key.period_usage_base_nanocredits == 25
        assert key.period_started_at == period_start("daily", after_midnight)
        assert key.period_usage_at(after_midnight) == 30
        assert check_invariants() == []


def test_issue10_9_a_paused_key_places_no_hold(app):
    with app.app_context():
        reset_database()
        account_id = new_account("paused@example.com", 10 * CREDIT)
        key, _ = key_service.create_key(db.session.get(Account, account_id), name="k")
        db.session.commit()
        assert key_service.set_paused(key, True)
        db.session.commit()
        key_id = key.id
        db.session.rollback()
        outcome = holds.reserve(hold_request(account_id, key_id, 5, START))
        assert outcome == holds.Refusal("key_paused")
        assert read_key(key_id).held_nanocredits == 0
        key = db.session.get(ApiKey, key_id)
        assert key.account.held_nanocredits == 0
        assert key_service.set_paused(key, False)
        db.session.commit()
        db.session.rollback()
        resumed = holds.reserve(hold_request(account_id, key_id, 5, START))
        assert isinstance(resumed, holds.Reservation)
