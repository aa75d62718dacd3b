"""Credit on its way to a refund is reserved like a hold, from the request to the refund, and the
ledger check watches that no reservation is left behind and that an ended account holds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import Account, AccountRequest, Hold
from app.services import ledger

CREDIT = 1_000_000_000


@pytest.fixture
def account_id(app, make_account):
    account_id = make_account("customer@example.com")
    with app.app_context():
        ledger.grant_credits(account_id, 10 * CREDIT, note="n", idempotency_key="g")
        db.session.commit()
    return account_id


def test_a_refund_reservation_never_takes_more_than_the_unused_credit(app, account_id):
    with app.app_context():
        ledger.reserve_for_refund(account_id, 4 * CREDIT)
        with pytest.raises(ledger.InsufficientCredit):
            ledger.reserve_for_refund(account_id, 6 * CREDIT + 1)
        hold = ledger.reserve_for_refund(account_id, 6 * CREDIT)
        assert hold.purpose == "refund" and hold.expires_at is None
        account = db.session.get(Account, account_id)
        assert account.held_nanocredits == 10 * CREDIT
        # It never expires by itself: the expiry job leaves it alone.
        assert ledger.expire_holds() == 0


def test_taking_from_a_reservation_moves_held_exactly_and_closes_it_once(app, account_id):
    with app.app_context():
        hold = ledger.reserve_for_refund(account_id, 5 * CREDIT)
        ledger.take_from_reservation(hold.id, 2 * CREDIT)
        assert db.session.get(Account, account_id).held_nanocredits == 3 * CREDIT
        assert db.session.get(Hold, hold.id).status == "open"
        with pytest.raises(ValueError):
            ledger.take_from_reservation(hold.id, 3 * CREDIT + 1)
        ledger.take_from_reservation(hold.id, 3 * CREDIT)
        closed = db.session.get(Hold, hold.id)
        assert closed.status == "settled" and closed.settled_amount_nanocredits == 5 * CREDIT
        assert db.session.get(Account, account_id).held_nanocredits == 0
        with pytest.raises(ValueError):
            ledger.take_from_reservation(hold.id, 1)
        assert ledger.release_hold(hold.id) is False


def test_shrinking_a_reservation_gives_the_excess_back(app, account_id):
    with app.app_context():
        hold = ledger.reserve_for_refund(account_id, 5 * CREDIT)
        ledger.shrink_reservation(hold.id, 2 * CREDIT)
        assert db.session.get(Account, account_id).held_nanocredits == 2 * CREDIT
        with pytest.raises(ValueError):
            ledger.shrink_reservation(hold.id, 3 * CREDIT)
        assert ledger.release_hold(hold.id) is True
        assert db.session.get(Account, account_id).held_nanocredits == 0
        db.session.commit()
        assert ledger.check_invariants() == []


def test_a_refund_reservation_of_no_open_request_fails_the_ledger_check(app, runner, account_id):
    with app.app_context():
        hold_id = ledger.reserve_for_refund(account_id, 3 * CREDIT).id
        request = AccountRequest(
            account_id=account_id, kind="refund", requested_cents=300, hold_id=hold_id
        )
        db.session.add(request)
        db.session.commit()
        assert ledger.check_invariants() == []
        request.state = "denied"  # denied without giving the credit back
        db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1
    assert f"account {account_id}: refund reservation {hold_id} of no open request" in (
        result.output
    )


def test_a_closed_account_holding_credit_fails_the_ledger_check_unless_flagged(
    app, runner, account_id
):
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET status = 'closed'"))
        db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1 and "balance of a closed account" in result.output
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET flagged_reason = 'late chargeback'"))
        db.session.commit()
    assert runner.invoke(args=["ledger", "check"]).exit_code == 0
