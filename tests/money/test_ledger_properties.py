"""Property tests of the ledger, holds and settlement (DESIGN.md, "Money").

A state machine drives random sequences of grants, purchases, adjustments, holds (with and without
keys, some keys with credit limits), settlements below, at and above the hold, releases, expiries,
late settlements, repeated closes, repeated idempotency keys, suspensions, key revocations and key
expiries. After every step the database must agree with `check_invariants()`, with an independent
recomputation from the raw rows and with the machine's own model of where every nanocredit should be.

Focused @given properties, the refusals (suspended account, revoked/expired/over-limit key), expiry
boundaries and races between concurrent sessions (holds, settlements, idempotency keys, lock order)
follow the machine.

Hypothesis runs many examples inside one test function, so the conftest's per-test cleanup does not
run between them: every example empties the money tables itself before it starts.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import event as sa_event
from sqlalchemy import text, update

from app.extensions import db
from app.models import Account, ApiKey
from app.models.ledger import LEDGER_KINDS
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services import keys as key_service
from app.services import ledger
from app.services.ledger import (
    AccountNotActive,
    IdempotencyConflict,
    InsufficientCredit,
    KeyNotUsable,
    LedgerError,
)
from app.services.terms import current_terms_version

CREDIT = 10**9
N_ACCOUNTS = 2
# MONEY_MACHINE_EXAMPLES=1000 for a deeper run than the default, which keeps the file fast.
MACHINE_SETTINGS = settings(
    deadline=None,
    max_examples=int(os.environ.get("MONEY_MACHINE_EXAMPLES", "30")),
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
EXAMPLE_SETTINGS = settings(
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- database helpers ----------------------------------------------------------------------------


# The tables these tests write to. The conftest empties every table after each test, so at the
# start of an example every other table is empty already.
WRITTEN_TABLES = {"accounts", "api_keys", "audit_log", "holds", "ledger_entries"}


def reset_database() -> None:
    """Empty the tables the examples write: Hypothesis examples share one test function, so each
    example cleans up for itself."""
    db.session.rollback()
    db.session.expunge_all()
    for table in reversed(db.metadata.sorted_tables):
        if table.name in WRITTEN_TABLES:
            db.session.execute(table.delete())
    db.session.commit()


def new_account(email: str, balance: int = 0) -> int:
    """An active account, inserted directly (no password hashing: examples must be fast)."""
    now = utcnow()
    account = Account(
        email=email,
        password_hash="!unusable",
        terms_version=current_terms_version(),
        terms_accepted_at=now,
        age_attested_at=now,
    )
    db.session.add(account)
    db.session.flush()
    if balance:
        ledger.grant_credits(account.id, balance, note="seed", idempotency_key=f"seed:{email}")
    db.session.commit()
    return account.id


def new_key(account_id: int, limit: int | None = None) -> int:
    key, _ = key_service.create_key(
        db.session.get(Account, account_id), name="k", limit_nanocredits=limit
    )
    db.session.commit()
    return key.id


def rows(sql: str, **params) -> list[tuple]:
    return [tuple(r) for r in db.session.execute(text(sql), params)]


@dataclass
class Recomputed:
    """Every money row, read with plain SQL, and the sums recomputed from them in Python."""

    accounts: dict[int, tuple]  # id -> (balance, held, status, flagged_reason)
    keys: dict[int, tuple]  # id -> (held, usage)
    holds: dict[int, tuple]  # id -> (account_id, api_key_id, amount, status, settled_amount)
    entries: dict[str, tuple]  # idempotency key -> (account_id, kind, amount)
    ledger_sum: dict[int, int]
    open_holds: dict[int, int]
    key_open_holds: dict[int, int]
    key_settled: dict[int, int]


def recompute() -> Recomputed:
    accounts = {
        r[0]: r[1:] for r in rows("SELECT id, balance, held, status, flagged_reason FROM accounts")
    }
    keys = {
        r[0]: r[1:] for r in rows("SELECT id, held_nanocredits, usage_nanocredits FROM api_keys")
    }
    holds = {
        r[0]: r[1:]
        for r in rows(
            "SELECT id, account_id, api_key_id, amount, status, settled_amount FROM holds"
        )
    }
    entries = {
        r[0]: r[1:]
        for r in rows("SELECT idempotency_key, account_id, kind, amount FROM ledger_entries")
    }
    ledger_sum = dict.fromkeys(accounts, 0)
    for account_id, _, amount in entries.values():
        ledger_sum[account_id] += amount
    open_holds = dict.fromkeys(accounts, 0)
    key_open_holds = dict.fromkeys(keys, 0)
    key_settled = dict.fromkeys(keys, 0)
    for account_id, key_id, amount, status, settled in holds.values():
        if status == "open":
            open_holds[account_id] += amount
            if key_id is not None:
                key_open_holds[key_id] += amount
        if status == "settled" and key_id is not None:
            key_settled[key_id] += settled
    return Recomputed(
        accounts, keys, holds, entries, ledger_sum, open_holds, key_open_holds, key_settled
    )


def assert_consistent() -> Recomputed:
    """check_invariants() finds nothing, and neither does the independent recomputation."""
    assert ledger.check_invariants() == []
    state = recompute()
    for account_id, (balance, held, _, _) in state.accounts.items():
        assert balance == state.ledger_sum[account_id], f"account {account_id} balance"
        assert held == state.open_holds[account_id], f"account {account_id} held"
        assert held >= 0
    for key_id, (held, usage) in state.keys.items():
        assert held == state.key_open_holds[key_id], f"key {key_id} held"
        assert usage == state.key_settled[key_id], f"key {key_id} usage"
    return state


def snapshot() -> tuple:
    """Every money-relevant column of every row, to prove that a refused operation changed nothing."""
    return (
        rows("SELECT id, balance, held, status, flagged_reason FROM accounts ORDER BY id"),
        rows(
            "SELECT id, held_nanocredits, usage_nanocredits, revoked_at, expires_at "
            "FROM api_keys ORDER BY id"
        ),
        rows("SELECT id, status, settled_amount, closed_at FROM holds ORDER BY id"),
        rows(
            "SELECT id, account_id, kind, amount, idempotency_key FROM ledger_entries ORDER BY id"
        ),
    )


def account_state(account_id: int) -> tuple[int, int, str | None]:
    [(balance, held, flagged)] = rows(
        "SELECT balance, held, flagged_reason FROM accounts WHERE id = :id", id=account_id
    )
    return balance, held, flagged


def later(minutes: int = 10) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


# --- the model the state machine keeps -----------------------------------------------------------


@dataclass
class AccountModel:
    id: int
    balance: int = 0
    held: int = 0
    status: str = "active"
    flagged: bool = False

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass
class KeyModel:
    id: int
    account_id: int
    limit: int | None
    held: int = 0
    usage: int = 0
    revoked: bool = False
    expired: bool = False


@dataclass
class HoldModel:
    id: int
    account_id: int
    key_id: int | None
    amount: int
    expires_at: datetime
    status: str = "open"
    settled: int | None = None


account_index = st.integers(min_value=0, max_value=N_ACCOUNTS - 1)
movements = st.one_of(
    st.tuples(st.sampled_from(["grant", "purchase"]), st.integers(1, 1_000 * CREDIT)),
    st.tuples(st.just("adjustment"), st.integers(-50 * CREDIT, 50 * CREDIT)),
    st.tuples(st.just("refund"), st.integers(-50 * CREDIT, -1)),
)
key_limits = st.one_of(st.none(), st.integers(1, 200 * CREDIT))


class LedgerMachine(RuleBasedStateMachine):
    """Random money operations against the real database, checked against a model after each step."""

    def __init__(self):
        super().__init__()
        reset_database()
        # Whole seconds, so that hold expiries compare the same on SQLite and PostgreSQL.
        self.base = utcnow().replace(microsecond=0)
        self.accounts = [
            AccountModel(new_account(f"machine{i}@example.com")) for i in range(N_ACCOUNTS)
        ]
        self.keys: dict[int, KeyModel] = {}
        self.holds: dict[int, HoldModel] = {}
        # idempotency key -> (account id, kind, amount) of every movement in the ledger
        self.movements: dict[str, tuple[int, str, int]] = {}
        self.serial = itertools.count()

    def teardown(self):
        db.session.rollback()
        db.session.expunge_all()

    def account(self, account_id: int) -> AccountModel:
        return next(a for a in self.accounts if a.id == account_id)

    @initialize(
        balances=st.lists(st.integers(0, 300 * CREDIT), min_size=N_ACCOUNTS, max_size=N_ACCOUNTS),
        limits=st.lists(key_limits, min_size=N_ACCOUNTS, max_size=N_ACCOUNTS),
    )
    def open_accounts(self, balances, limits):
        """Start every account with some credit and one key (some with a credit limit)."""
        for account, balance, limit in zip(self.accounts, balances, limits, strict=True):
            if balance:
                key = f"opening:{account.id}"
                ledger.grant_credits(account.id, balance, note="opening", idempotency_key=key)
                db.session.commit()
                account.balance = balance
                self.movements[key] = (account.id, "grant", balance)
            key_id = new_key(account.id, limit)
            self.keys[key_id] = KeyModel(key_id, account.id, limit)

    # -- money in and out of the ledger --

    @rule(index=account_index, movement=movements, through_grant=st.booleans())
    def post_movement(self, index, movement, through_grant):
        kind, amount = movement
        account = self.accounts[index]
        idempotency_key = f"movement:{next(self.serial)}"
        if kind == "grant" and through_grant:
            _, created = ledger.grant_credits(
                account.id, amount, note=" machine grant ", idempotency_key=idempotency_key
            )
        else:
            _, created = ledger.post_entry(
                account_id=account.id,
                kind=kind,
                amount_nanocredits=amount,
                idempotency_key=idempotency_key,
            )
        db.session.commit()
        assert created
        account.balance += amount
        self.movements[idempotency_key] = (account.id, kind, amount)

    @precondition(lambda self: self.movements)
    @rule(data=st.data(), variant=st.sampled_from(["same", "amount", "account", "kind"]))
    def repeat_idempotency_key(self, data, variant):
        idempotency_key = data.draw(st.sampled_from(sorted(self.movements)))
        account_id, kind, amount = self.movements[idempotency_key]
        before = snapshot()
        if variant == "same":
            entry, created = ledger.post_entry(
                account_id=account_id,
                kind=kind,
                amount_nanocredits=amount,
                idempotency_key=idempotency_key,
            )
            assert not created
            assert (entry.account_id, entry.kind, entry.amount_nanocredits) == (
                account_id,
                kind,
                amount,
            )
        else:
            if variant == "amount":
                amount += data.draw(st.sampled_from([-1, 1, CREDIT]))
            elif variant == "account":
                account_id = next(a.id for a in self.accounts if a.id != account_id)
            else:
                kind = data.draw(st.sampled_from([k for k in LEDGER_KINDS if k != kind]))
            with pytest.raises(IdempotencyConflict):
                ledger.post_entry(
                    account_id=account_id,
                    kind=kind,
                    amount_nanocredits=amount,
                    idempotency_key=idempotency_key,
                )
        db.session.commit()
        assert snapshot() == before

    # -- keys and account status --

    @rule(index=account_index, limit=key_limits)
    def create_key(self, index, limit):
        account = self.accounts[index]
        if account.status != "active":
            with pytest.raises(key_service.KeyRequestError):
                new_key(account.id, limit)
            db.session.rollback()
            return
        key_id = new_key(account.id, limit)
        self.keys[key_id] = KeyModel(key_id, account.id, limit)

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), how=st.sampled_from(["revoke", "expire"]))
    def disable_key(self, data, how):
        key = self.keys[data.draw(st.sampled_from(sorted(self.keys)), label="key")]
        if how == "revoke":
            assert key_service.revoke_key(db.session.get(ApiKey, key.id)) is (not key.revoked)
            key.revoked = True
        else:
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            key.expired = True
        db.session.commit()

    @rule(index=account_index)
    def toggle_suspension(self, index):
        account = self.accounts[index]
        row = db.session.get(Account, account.id)
        if account.status == "active":
            with pytest.raises(account_service.AccountError):
                account_service.unsuspend(row, reason="machine", actor_id=None)
            account_service.suspend(row, reason="machine", actor_id=None)
            account.status = "suspended"
        else:
            with pytest.raises(account_service.AccountError):
                account_service.suspend(row, reason="machine", actor_id=None)
            account_service.unsuspend(row, reason="machine", actor_id=None)
            account.status = "active"
        db.session.commit()

    # -- holds --

    @rule(data=st.data(), index=account_index, minutes=st.integers(1, 120))
    def place_hold_with_own_key(self, data, index, minutes):
        account = self.accounts[index]
        own = sorted(
            k.id
            for k in self.keys.values()
            if k.account_id == account.id and not (k.revoked or k.expired)
        )
        key = self.keys[data.draw(st.sampled_from(own), label="key")] if own else None
        self._place_hold(data, account, key, minutes)

    @rule(data=st.data(), index=account_index, minutes=st.integers(1, 120))
    def place_hold_without_key(self, data, index, minutes):
        self._place_hold(data, self.accounts[index], None, minutes)

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), index=account_index, minutes=st.integers(1, 120))
    def place_hold_with_any_key(self, data, index, minutes):
        """Revoked, expired and other accounts' keys too."""
        key = self.keys[data.draw(st.sampled_from(sorted(self.keys)), label="key")]
        self._place_hold(data, self.accounts[index], key, minutes)

    def _place_hold(self, data, account, key, minutes):
        # Amounts at the edges that matter, amounts that fit, and anything else.
        room = account.available
        edges = [account.available - 1, account.available, account.available + 1]
        if key is not None and key.limit is not None:
            key_room = key.limit - key.usage - key.held
            room = min(room, key_room)
            edges += [key_room - 1, key_room, key_room + 1]
        edges = sorted({e for e in edges if e > 0})
        choices = [st.integers(1, 300 * CREDIT)]
        if edges:
            choices.append(st.sampled_from(edges))
        if room > 0:
            choices += [st.integers(1, room)] * 3
        amount = data.draw(st.one_of(choices), label="amount")

        key_reasons = set()
        if key is not None:
            if key.account_id != account.id:
                key_reasons.add("another account's key")
            if key.revoked:
                key_reasons.add("revoked")
            if key.expired:
                key_reasons.add("expired")
            if key.limit is not None and key.usage + key.held + amount > key.limit:
                key_reasons.add("limit_reached")
        expected = {KeyNotUsable} if key_reasons else set()
        if account.status != "active":
            expected.add(AccountNotActive)
        elif account.available < amount:
            expected.add(InsufficientCredit)

        expires_at = self.base + timedelta(minutes=minutes)
        call = {
            "account_id": account.id,
            "amount_nanocredits": amount,
            "expires_at": expires_at,
            "api_key_id": None if key is None else key.id,
            "request_id": f"req-{next(self.serial)}",
        }
        if expected:
            before = snapshot()
            with pytest.raises(LedgerError) as caught:
                ledger.place_hold(**call)
            refusal = caught.value
            event(f"hold refused: {type(refusal).__name__}")
            assert type(refusal) in expected, (refusal, expected)
            if isinstance(refusal, KeyNotUsable) and "another account's key" not in key_reasons:
                assert refusal.reason in key_reasons
            if isinstance(refusal, AccountNotActive):
                assert refusal.status == account.status
            if isinstance(refusal, InsufficientCredit):
                assert (refusal.balance, refusal.held, refusal.required) == (
                    account.balance,
                    account.held,
                    amount,
                )
            # Nothing reserved, even before the caller rolls back (the invariant then checks the
            # committed state).
            assert snapshot() == before
            db.session.commit()
            return

        hold = ledger.place_hold(**call)
        db.session.commit()
        event("hold placed " + ("with a key" if key else "without a key"))
        assert hold.status == "open"
        self.holds[hold.id] = HoldModel(
            hold.id, account.id, call["api_key_id"], amount, expires_at=expires_at
        )
        account.held += amount
        if key is not None:
            key.held += amount
        balance, held, _ = account_state(account.id)
        # A hold never takes available credit below zero.
        assert balance - held >= 0
        assert (balance, held) == (account.balance, account.held)

    @precondition(lambda self: self.holds)
    @rule(
        data=st.data(),
        shape=st.sampled_from(
            ["zero", "below", "equal", "above", "down_to_zero", "past_the_balance"]
        ),
    )
    def settle(self, data, shape):
        hold = self._pick_hold(data)
        if shape == "zero":
            cost = 0
        elif shape == "below":
            cost = data.draw(st.integers(0, hold.amount - 1), label="cost")
        elif shape == "equal":
            cost = hold.amount
        elif shape == "above":
            cost = hold.amount + data.draw(st.integers(1, 500 * CREDIT), label="excess")
        elif shape == "down_to_zero":
            cost = max(0, self.account(hold.account_id).balance)
        else:
            balance = self.account(hold.account_id).balance
            cost = max(hold.amount, balance + data.draw(st.integers(1, 10 * CREDIT)))
        self._settle(hold, cost)

    def _pick_hold(self, data) -> HoldModel:
        """Mostly a hold that is still open (or expired), sometimes any hold at all."""
        unsettled = sorted(h.id for h in self.holds.values() if h.status in ("open", "expired"))
        choices = st.sampled_from(sorted(self.holds))
        if unsettled:
            choices = st.sampled_from(unsettled) | st.sampled_from(unsettled) | choices
        return self.holds[data.draw(choices, label="hold")]

    def _settle(self, hold: HoldModel, cost: int) -> None:
        before = snapshot() if hold.status not in ("open", "expired") else None
        settled = ledger.settle_hold(hold.id, cost, reference_id=f"usage-{hold.id}")
        db.session.commit()
        if hold.status not in ("open", "expired"):
            assert settled is False
            assert snapshot() == before
            return
        assert settled is True
        event(f"settled {hold.status} hold" + (" with a key" if hold.key_id else ""))
        account = self.account(hold.account_id)
        key = None if hold.key_id is None else self.keys[hold.key_id]
        if hold.status == "open":
            account.held -= hold.amount
            if key is not None:
                key.held -= hold.amount
        # Settlement debits exactly the cost, whatever the hold was.
        account.balance -= cost
        if key is not None:
            key.usage += cost
        if cost > 0:
            self.movements[f"usage:hold:{hold.id}"] = (account.id, "usage", -cost)
            if account.balance < 0:
                event("settlement took the balance below zero")
                account.flagged = True
        hold.status, hold.settled = "settled", cost
        usage_rows = rows(
            "SELECT account_id, kind, amount FROM ledger_entries WHERE idempotency_key = :k",
            k=f"usage:hold:{hold.id}",
        )
        assert usage_rows == ([(account.id, "usage", -cost)] if cost > 0 else [])

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        hold = self._pick_hold(data)
        self._release(hold)

    def _release(self, hold: HoldModel) -> None:
        before = snapshot() if hold.status != "open" else None
        released = ledger.release_hold(hold.id)
        db.session.commit()
        if hold.status != "open":
            assert released is False
            assert snapshot() == before
            return
        assert released is True
        self.account(hold.account_id).held -= hold.amount
        if hold.key_id is not None:
            self.keys[hold.key_id].held -= hold.amount
        hold.status, hold.settled = "released", 0

    @precondition(
        lambda self: any(h.status in ("settled", "released") for h in self.holds.values())
    )
    @rule(data=st.data(), cost=st.integers(0, 100 * CREDIT))
    def close_a_closed_hold_again(self, data, cost):
        closed = sorted(h for h, m in self.holds.items() if m.status in ("settled", "released"))
        hold = self.holds[data.draw(st.sampled_from(closed), label="hold")]
        before = snapshot()
        assert ledger.settle_hold(hold.id, cost) is False
        assert ledger.release_hold(hold.id) is False
        db.session.commit()
        assert snapshot() == before

    @precondition(lambda self: any(h.status == "expired" for h in self.holds.values()))
    @rule(data=st.data(), shape=st.sampled_from(["zero", "equal", "above"]))
    def settle_an_expired_hold_late(self, data, shape):
        expired = sorted(h for h, m in self.holds.items() if m.status == "expired")
        hold = self.holds[data.draw(st.sampled_from(expired), label="hold")]
        # Releasing it again does nothing; settling it late still debits.
        self._release(hold)
        cost = {"zero": 0, "equal": hold.amount, "above": hold.amount + CREDIT}[shape]
        self._settle(hold, cost)

    @rule(minutes=st.integers(0, 130))
    def expire_holds(self, minutes):
        moment = self.base + timedelta(minutes=minutes, seconds=30)
        due = [h for h in self.holds.values() if h.status == "open" and h.expires_at < moment]
        assert ledger.expire_holds(moment) == len(due)
        db.session.commit()
        for hold in due:
            hold.status = "expired"
            self.account(hold.account_id).held -= hold.amount
            if hold.key_id is not None:
                self.keys[hold.key_id].held -= hold.amount

    # -- after every step --

    @invariant()
    def database_agrees_with_itself_and_with_the_model(self):
        state = assert_consistent()
        for account in self.accounts:
            balance, held, status, flagged = state.accounts[account.id]
            assert (balance, held, status) == (account.balance, account.held, account.status)
            # Flagged exactly when a settlement took the balance below zero.
            assert (flagged is not None) == account.flagged, account
        assert state.keys == {k.id: (k.held, k.usage) for k in self.keys.values()}
        assert {h: (r[3], r[4]) for h, r in state.holds.items()} == {
            h.id: (h.status, h.settled) for h in self.holds.values()
        }
        assert state.entries == self.movements


def test_balance_equals_sum_of_ledger_and_held_equals_open_holds_under_any_sequence(app):
    with app.app_context():
        run_state_machine_as_test(LedgerMachine, settings=MACHINE_SETTINGS)


# --- focused properties --------------------------------------------------------------------------


@given(
    balance=st.integers(0, 100 * CREDIT),
    amounts=st.lists(st.integers(1, 40 * CREDIT), min_size=1, max_size=12),
    key_limit=st.one_of(st.none(), st.integers(1, 100 * CREDIT)),
)
@EXAMPLE_SETTINGS
def test_holds_never_make_available_credit_negative(app, balance, amounts, key_limit):
    with app.app_context():
        reset_database()
        account_id = new_account("holds@example.com", balance)
        key_id = new_key(account_id, key_limit)
        reserved = 0  # on the account
        reserved_on_the_key = 0
        for i, amount in enumerate(amounts):
            with_key = i % 2 == 0
            fits_account = balance - reserved >= amount
            fits_key = (
                not with_key or key_limit is None or key_limit - reserved_on_the_key >= amount
            )
            call = {
                "account_id": account_id,
                "amount_nanocredits": amount,
                "expires_at": later(),
                "api_key_id": key_id if with_key else None,
            }
            if fits_account and fits_key:
                ledger.place_hold(**call)
                reserved += amount
                reserved_on_the_key += amount if with_key else 0
            else:
                expected = []
                if not fits_key:
                    expected.append(KeyNotUsable)
                if not fits_account:
                    expected.append(InsufficientCredit)
                with pytest.raises(tuple(expected)):
                    ledger.place_hold(**call)
            db.session.commit()
            current_balance, held, _ = account_state(account_id)
            assert (current_balance, held) == (balance, reserved)
            assert current_balance - held >= 0
            assert reserved_on_key(key_id) == reserved_on_the_key
        assert_consistent()


def reserved_on_key(key_id: int) -> int:
    [(held, usage)] = rows(
        "SELECT held_nanocredits, usage_nanocredits FROM api_keys WHERE id = :id", id=key_id
    )
    return held + usage


@given(
    hold=st.integers(1, 50 * CREDIT),
    closes=st.lists(st.sampled_from(["settle", "release", "expire"]), min_size=1, max_size=6),
    cost=st.integers(0, 100 * CREDIT),
)
@EXAMPLE_SETTINGS
def test_each_hold_is_closed_at_most_once(app, hold, closes, cost):
    with app.app_context():
        reset_database()
        account_id = new_account("once@example.com", 50 * CREDIT)
        key_id = new_key(account_id)
        placed = ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=hold,
            expires_at=utcnow() - timedelta(seconds=1),
            api_key_id=key_id,
        )
        hold_id = placed.id
        db.session.commit()
        status = "open"
        for close in closes:
            before = snapshot()
            if close == "settle":
                done = ledger.settle_hold(hold_id, cost)
                should = status in ("open", "expired")
                new_status = "settled"
            elif close == "release":
                done = ledger.release_hold(hold_id)
                should = status == "open"
                new_status = "released"
            else:
                done = ledger.expire_holds(utcnow()) == 1
                should = status == "open"
                new_status = "expired"
            db.session.commit()
            assert done is should, (close, status)
            if should:
                status = new_status
            else:
                assert snapshot() == before
        assert_consistent()
        balance, held, _ = account_state(account_id)
        assert held == (hold if status == "open" else 0)
        debited = cost if status == "settled" else 0
        assert balance == 50 * CREDIT - debited
        usage_entries = rows("SELECT amount FROM ledger_entries WHERE kind = 'usage'")
        assert usage_entries == ([(-cost,)] if debited else [])


@given(
    balance=st.integers(1, 20 * CREDIT),
    hold=st.integers(1, 20 * CREDIT),
    cost_shape=st.sampled_from(["zero", "below", "equal", "above", "far_above"]),
    extra=st.integers(1, 50 * CREDIT),
    with_key=st.booleans(),
)
@EXAMPLE_SETTINGS
def test_settlement_debits_exactly_the_cost_and_flags_a_negative_balance(
    app, balance, hold, cost_shape, extra, with_key
):
    hold = min(hold, balance)
    with app.app_context():
        reset_database()
        account_id = new_account("settle@example.com", balance)
        key_id = new_key(account_id) if with_key else None
        placed = ledger.place_hold(
            account_id=account_id, amount_nanocredits=hold, expires_at=later(), api_key_id=key_id
        )
        db.session.commit()
        cost = {
            "zero": 0,
            "below": hold // 2,
            "equal": hold,
            "above": hold + 1,
            "far_above": hold + extra,
        }[cost_shape]
        assert ledger.settle_hold(placed.id, cost) is True
        db.session.commit()
        new_balance, held, flagged = account_state(account_id)
        assert new_balance == balance - cost
        assert held == 0
        assert (flagged is not None) == (new_balance < 0)
        if key_id is not None:
            assert reserved_on_key(key_id) == cost
        [(status, settled_amount)] = rows(
            "SELECT status, settled_amount FROM holds WHERE id = :id", id=placed.id
        )
        assert (status, settled_amount) == ("settled", cost)
        assert_consistent()


@given(
    amount=st.integers(-100 * CREDIT, 100 * CREDIT),
    kind=st.sampled_from(LEDGER_KINDS),
    repeats=st.integers(2, 5),
)
@EXAMPLE_SETTINGS
def test_post_entry_with_the_same_idempotency_key_moves_money_once(app, amount, kind, repeats):
    with app.app_context():
        reset_database()
        account_id = new_account("idem@example.com")
        first, created = ledger.post_entry(
            account_id=account_id, kind=kind, amount_nanocredits=amount, idempotency_key="k-1"
        )
        db.session.commit()
        assert created
        first_id = first.id
        for _ in range(repeats - 1):
            again, created = ledger.post_entry(
                account_id=account_id, kind=kind, amount_nanocredits=amount, idempotency_key="k-1"
            )
            db.session.commit()
            assert not created
            assert again.id == first_id
        with pytest.raises(IdempotencyConflict):
            ledger.post_entry(
                account_id=account_id,
                kind=kind,
                amount_nanocredits=amount + 1,
                idempotency_key="k-1",
            )
        db.session.rollback()
        assert account_state(account_id)[0] == amount
        assert rows("SELECT COUNT(*) FROM ledger_entries") == [(1,)]
        assert_consistent()


# --- refusals ------------------------------------------------------------------------------------


@pytest.fixture
def funded(app_ctx):
    """An account with 10 credits and a key without limits."""
    account_id = new_account("funded@example.com", 10 * CREDIT)
    return {"account_id": account_id, "key_id": new_key(account_id)}


def place(funded, amount=CREDIT, *, key=True, **overrides):
    call = {
        "account_id": funded["account_id"],
        "amount_nanocredits": amount,
        "expires_at": later(),
        "api_key_id": funded["key_id"] if key else None,
    }
    return ledger.place_hold(**(call | overrides))


@pytest.mark.parametrize("key", [True, False])
def test_suspended_account_cannot_place_holds(funded, key):
    account = db.session.get(Account, funded["account_id"])
    account_service.suspend(account, reason="chargeback", actor_id=None)
    db.session.commit()
    before = snapshot()
    with pytest.raises(AccountNotActive) as caught:
        place(funded, key=key)
    assert caught.value.status == "suspended"
    assert snapshot() == before
    db.session.commit()
    assert snapshot() == before
    # Lifting the suspension lets it hold again.
    account_service.unsuspend(account, reason="resolved", actor_id=None)
    db.session.commit()
    place(funded, key=key)
    db.session.commit()
    assert_consistent()


def test_terminated_account_cannot_place_holds(funded):
    db.session.execute(
        update(Account).where(Account.id == funded["account_id"]).values(status="terminated")
    )
    db.session.commit()
    with pytest.raises(AccountNotActive):
        place(funded)


def test_revoked_key_cannot_place_holds(funded):
    key_service.revoke_key(db.session.get(ApiKey, funded["key_id"]))
    db.session.commit()
    before = snapshot()
    with pytest.raises(KeyNotUsable) as caught:
        place(funded)
    assert caught.value.reason == "revoked"
    assert snapshot() == before
    place(funded, key=False)  # the account itself can still hold


def test_expired_key_cannot_place_holds(funded):
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == funded["key_id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    before = snapshot()
    with pytest.raises(KeyNotUsable) as caught:
        place(funded)
    assert caught.value.reason == "expired"
    assert snapshot() == before


def test_key_over_its_limit_cannot_place_holds(app_ctx):
    account_id = new_account("limit@example.com", 10 * CREDIT)
    key_id = new_key(account_id, limit=3 * CREDIT)
    first = ledger.place_hold(
        account_id=account_id, amount_nanocredits=2 * CREDIT, expires_at=later(), api_key_id=key_id
    )
    db.session.commit()
    before = snapshot()
    with pytest.raises(KeyNotUsable) as caught:
        ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=CREDIT + 1,
            expires_at=later(),
            api_key_id=key_id,
        )
    assert caught.value.reason == "limit_reached"
    assert snapshot() == before
    # Exactly up to the limit is fine.
    ledger.place_hold(
        account_id=account_id, amount_nanocredits=CREDIT, expires_at=later(), api_key_id=key_id
    )
    # Usage counts against the limit too: settle the first hold over its amount.
    assert ledger.settle_hold(first.id, 2 * CREDIT + 5)
    db.session.commit()
    with pytest.raises(KeyNotUsable):
        ledger.place_hold(
            account_id=account_id, amount_nanocredits=1, expires_at=later(), api_key_id=key_id
        )
    assert_consistent()


def test_key_of_another_account_cannot_place_holds(funded):
    other_id = new_account("other@example.com", 10 * CREDIT)
    before = snapshot()
    with pytest.raises(KeyNotUsable):
        place(funded, account_id=other_id)
    assert snapshot() == before


def test_key_of_another_account_is_refused_as_unknown_not_as_over_limit(funded):
    """Regression: ledger._why_key_refused once looked the key up by id alone, so a key of another
    account (with no limit at all) was reported as "limit_reached"."""
    other_id = new_account("other@example.com", 10 * CREDIT)
    with pytest.raises(KeyNotUsable) as caught:
        place(funded, account_id=other_id)
    assert caught.value.reason == "unknown key"


def test_unknown_key_cannot_place_holds(funded):
    with pytest.raises(KeyNotUsable) as caught:
        place(funded, api_key_id=funded["key_id"] + 1000)
    assert caught.value.reason == "unknown key"


def test_insufficient_credit_reserves_nothing_on_the_key(funded):
    before = snapshot()
    with pytest.raises(InsufficientCredit) as caught:
        place(funded, 10 * CREDIT + 1)
    assert (caught.value.balance, caught.value.held, caught.value.required) == (
        10 * CREDIT,
        0,
        10 * CREDIT + 1,
    )
    assert snapshot() == before
    place(funded, 10 * CREDIT)  # exactly the available credit is fine
    db.session.commit()
    assert_consistent()


@pytest.mark.parametrize("amount", [0, -1])
def test_hold_must_be_positive(funded, amount):
    with pytest.raises(ValueError):
        place(funded, amount)


def test_negative_cost_is_refused(funded):
    hold = place(funded)
    with pytest.raises(ValueError):
        ledger.settle_hold(hold.id, -1)


# --- expiry --------------------------------------------------------------------------------------


def test_expire_holds_releases_only_holds_past_their_expiry(funded):
    moment = utcnow().replace(microsecond=0)
    past = place(funded, 1, expires_at=moment - timedelta(seconds=1))
    exactly_now = place(funded, 2, expires_at=moment)
    future = place(funded, 4, expires_at=moment + timedelta(seconds=1))
    ids = (past.id, exactly_now.id, future.id)
    db.session.commit()
    assert ledger.expire_holds(moment) == 1
    db.session.commit()
    statuses = dict(rows("SELECT id, status FROM holds"))
    assert [statuses[i] for i in ids] == ["expired", "open", "open"]
    assert account_state(funded["account_id"])[1] == 6
    assert ledger.expire_holds(moment) == 0
    assert ledger.expire_holds(moment + timedelta(seconds=2)) == 2
    db.session.commit()
    assert account_state(funded["account_id"])[1] == 0
    assert_consistent()


def test_late_settlement_of_an_expired_hold_debits_without_releasing_twice(funded):
    hold = place(funded, 3 * CREDIT, expires_at=utcnow() - timedelta(seconds=1))
    other = place(funded, 2 * CREDIT)  # still open: its reservation must stay intact
    db.session.commit()
    assert ledger.expire_holds() == 1
    db.session.commit()
    assert account_state(funded["account_id"])[:2] == (10 * CREDIT, 2 * CREDIT)
    assert ledger.release_hold(hold.id) is False
    assert ledger.settle_hold(hold.id, 4 * CREDIT) is True
    db.session.commit()
    assert account_state(funded["account_id"])[:2] == (6 * CREDIT, 2 * CREDIT)
    assert reserved_on_key(funded["key_id"]) == 2 * CREDIT + 4 * CREDIT
    assert ledger.settle_hold(hold.id, 4 * CREDIT) is False
    assert ledger.release_hold(other.id) is True
    db.session.commit()
    assert account_state(funded["account_id"])[:2] == (6 * CREDIT, 0)
    assert_consistent()


def test_settlement_beyond_the_balance_flags_the_account_once(funded):
    hold = place(funded, 10 * CREDIT)
    db.session.commit()
    assert ledger.settle_hold(hold.id, 12 * CREDIT)
    db.session.commit()
    balance, held, flagged = account_state(funded["account_id"])
    assert (balance, held) == (-2 * CREDIT, 0)
    assert flagged == "negative balance"
    # A negative balance blocks new holds until credit comes in.
    with pytest.raises(InsufficientCredit):
        place(funded, 1)
    ledger.grant_credits(funded["account_id"], 3 * CREDIT, note="top up", idempotency_key="t")
    db.session.commit()
    place(funded, CREDIT)
    db.session.commit()
    assert_consistent()


# --- concurrency ---------------------------------------------------------------------------------
#
# Each worker runs in its own thread, app context, session and database connection, as two gunicorn
# workers would. Where the interleaving matters, a cursor hook pauses one worker right after a given
# statement, so the race happens every time instead of once in a while.


def run_together(app, workers: dict, pauses: dict | None = None, seconds: float = 0.4) -> dict:
    """Run {name: callable} at once, each committing on success; return {name: result or error}.

    `pauses` maps a worker's name to a statement prefix after which it sleeps once, holding its
    locks, e.g. {"placer": "UPDATE api_keys"}.
    """
    pending = dict(pauses or {})
    barrier = threading.Barrier(len(workers))
    results: dict = {}

    def pause(conn, cursor, statement, parameters, context, executemany):
        name = threading.current_thread().name
        prefix = pending.get(name)
        if prefix and statement.lstrip().upper().startswith(prefix.upper()):
            del pending[name]
            time.sleep(seconds)

    def work(name, call):
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                results[name] = call()
                db.session.commit()
            except Exception as exc:  # the test inspects it
                db.session.rollback()
                results[name] = exc
            finally:
                db.session.remove()

    with app.app_context():
        engine = db.engine
    sa_event.listen(engine, "after_cursor_execute", pause)
    try:
        threads = [
            threading.Thread(target=work, args=(name, call), name=name)
            for name, call in workers.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in threads), "a worker hung"
    finally:
        sa_event.remove(engine, "after_cursor_execute", pause)
    return results


def test_concurrent_holds_cannot_both_spend_the_same_credit(app):
    with app.app_context():
        account_id = new_account("race@example.com", 10 * CREDIT)
        key_id = new_key(account_id)

    def hold():
        return ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=6 * CREDIT,
            expires_at=later(),
            api_key_id=key_id,
        ).id

    for _ in range(5):
        results = run_together(
            app, {"first": hold, "second": hold}, pauses={"first": "UPDATE accounts"}
        )
        placed = [r for r in results.values() if isinstance(r, int)]
        refused = [r for r in results.values() if isinstance(r, InsufficientCredit)]
        assert (len(placed), len(refused)) == (1, 1), results
        with app.app_context():
            assert account_state(account_id)[:2] == (10 * CREDIT, 6 * CREDIT)
            assert reserved_on_key(key_id) == 6 * CREDIT
            assert_consistent()
            assert ledger.release_hold(placed[0])
            db.session.commit()


def test_concurrent_settlements_of_one_hold_debit_once(app):
    with app.app_context():
        account_id = new_account("twice@example.com", 10 * CREDIT)
        hold_id = ledger.place_hold(
            account_id=account_id, amount_nanocredits=2 * CREDIT, expires_at=later()
        ).id
        db.session.commit()

    results = run_together(
        app,
        {
            "first": lambda: ledger.settle_hold(hold_id, 3 * CREDIT),
            "second": lambda: ledger.settle_hold(hold_id, 3 * CREDIT),
        },
        pauses={"first": "UPDATE holds"},
    )
    assert sorted(results.values(), key=repr) == [False, True], results
    with app.app_context():
        assert account_state(account_id)[:2] == (7 * CREDIT, 0)
        assert_consistent()


def test_concurrent_posts_with_one_idempotency_key_move_money_once(app):
    with app.app_context():
        account_id = new_account("idem-race@example.com")

    def post(delay):
        def call():
            time.sleep(delay)
            _, created = ledger.post_entry(
                account_id=account_id,
                kind="purchase",
                amount_nanocredits=5 * CREDIT,
                idempotency_key="pi_123",
            )
            return created

        return call

    results = run_together(
        app,
        {"first": post(0), "second": post(0.1)},
        pauses={"first": "INSERT INTO ledger_entries"},
    )
    assert sorted(results.values(), key=repr) == [False, True], results
    with app.app_context():
        assert account_state(account_id)[0] == 5 * CREDIT
        assert rows("SELECT COUNT(*) FROM ledger_entries") == [(1,)]
        assert_consistent()


@pytest.mark.parametrize("closer", ["release", "settle", "expire"])
def test_closing_a_hold_while_placing_another_on_the_same_key_does_not_deadlock(app, closer):
    """place_hold locks the key row, then the account row; closing a hold must not lock them in the
    opposite order, or two requests of one key deadlock and PostgreSQL aborts one of them."""
    with app.app_context():
        account_id = new_account("deadlock@example.com", 10 * CREDIT)
        key_id = new_key(account_id)
        expires_at = utcnow() - timedelta(seconds=1) if closer == "expire" else later()
        open_hold = ledger.place_hold(
            account_id=account_id,
            amount_nanocredits=CREDIT,
            expires_at=expires_at,
            api_key_id=key_id,
        ).id
        db.session.commit()

    close = {
        "release": lambda: ledger.release_hold(open_hold),
        "settle": lambda: ledger.settle_hold(open_hold, CREDIT),
        "expire": lambda: ledger.expire_holds() == 1,
    }[closer]
    results = run_together(
        app,
        {
            "placer": lambda: (
                ledger.place_hold(
                    account_id=account_id,
                    amount_nanocredits=2 * CREDIT,
                    expires_at=later(),
                    api_key_id=key_id,
                ).id
            ),
            "closer": close,
        },
        pauses={"placer": "UPDATE api_keys", "closer": "UPDATE accounts"},
    )
    assert not any(isinstance(r, Exception) for r in results.values()), results
    assert results["closer"] is True
    with app.app_context():
        assert account_state(account_id)[1] == 2 * CREDIT
        assert_consistent()
