"""The low-balance email (issue 10, item 8): sent once when the balance falls below the customer's
threshold, re-armed when it is back at or above it, exactly once per crossing even with two workers
running the check at the same moment; run every minute by the scheduler."""

from __future__ import annotations

import logging
import threading

import pytest
from rq import SimpleWorker

from app.extensions import db, get_queue
from app.models import Account
from app.models.types import utcnow
from app.services import alerts
from app.services.accounts import suspend
from app.services.ledger import grant_credits
from app.tasks.alerts import check_low_balances_job
from tests.web.ledger_history import CREDIT, spend_at

EMAIL = "alice@example.com"
SUBJECT = "Your OneKey balance is below 5.00 credits"


@pytest.fixture
def mails(app, caplog):
    """mails() runs the queued jobs as a worker would and returns the low-balance emails logged
    since the last call (MAIL_SMTP_URL is unset in tests: mail goes to the log)."""
    seen = []

    def run() -> list[str]:
        with app.app_context(), caplog.at_level(logging.INFO, logger="onekey.mail"):
            queue = get_queue("default")
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
        sent = [r.getMessage() for r in caplog.records if r.name == "onekey.mail"]
        new = [m for m in sent[len(seen) :] if "balance is below" in m]
        seen[:] = sent
        return new

    return run


@pytest.fixture
def alice(app, make_account):
    """An account with 10 credits and a threshold of 5."""
    account_id = make_account(EMAIL)
    with app.app_context():
        grant_credits(account_id, 10 * CREDIT, note="t", idempotency_key="g0")
        alerts.set_threshold(account_id, 5 * CREDIT)
        db.session.commit()
    return account_id


def check(app) -> int:
    with app.app_context():
        return check_low_balances_job()


def spend(app, account_id: int, cost: int) -> None:
    with app.app_context():
        spend_at(account_id, cost, utcnow())
        db.session.commit()


def grant(app, account_id: int, amount: int, key: str) -> None:
    with app.app_context():
        grant_credits(account_id, amount, note="t", idempotency_key=key)
        db.session.commit()


def test_one_email_when_the_balance_falls_below_the_threshold_item8(app, alice, mails):
    assert check(app) == 0
    spend(app, alice, 5 * CREDIT)  # exactly at the threshold: not below it
    assert check(app) == 0
    assert mails() == []
    spend(app, alice, 1)
    assert check(app) == 1
    [mail] = mails()
    assert f"To: {EMAIL}" in mail and f"Subject: {SUBJECT}" in mail
    assert "Your OneKey balance is 4.999999999 credits" in mail and "/dashboard" in mail
    # Still below, and lower: no second email for the same crossing.
    spend(app, alice, 2 * CREDIT)
    assert check(app) == 0
    assert check(app) == 0
    assert mails() == []


def test_the_alert_rearms_once_the_balance_is_back_at_the_threshold_item8(app, alice, mails):
    spend(app, alice, 6 * CREDIT)
    assert check(app) == 1
    assert len(mails()) == 1
    grant(app, alice, CREDIT // 2, "g1")  # 4.5: still below
    assert check(app) == 0
    grant(app, alice, CREDIT // 2, "g2")  # 5.0: at the threshold, re-armed
    assert check(app) == 0
    with app.app_context():
        assert db.session.get(Account, alice).low_balance_alert_sent_at is None
    assert mails() == []
    spend(app, alice, 1)  # the second crossing
    assert check(app) == 1
    [mail] = mails()
    assert "Your OneKey balance is 4.999999999 credits" in mail


def test_two_workers_checking_at_once_send_exactly_one_email_item8(app, alice, mails):
    """The first check claims the crossing and holds its transaction open; the second, started
    meanwhile, must wait for it and then find nothing left to claim."""
    spend(app, alice, 6 * CREDIT)
    claimed_first = threading.Event()
    commit_first = threading.Event()
    outcome = {}

    def first_worker():
        with app.app_context():
            outcome["first"] = alerts.claim_due()
            claimed_first.set()
            commit_first.wait(timeout=30)
            db.session.commit()

    def second_worker():
        with app.app_context():
            outcome["second"] = check_low_balances_job()

    first = threading.Thread(target=first_worker)
    first.start()
    assert claimed_first.wait(timeout=30)
    second = threading.Thread(target=second_worker)
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive(), "the second check must wait for the first one's claim"
    commit_first.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert outcome == {"first": [alice], "second": 0}
    assert mails() == []  # the first "worker" here only claimed; the second queued nothing


def test_many_checks_at_once_queue_one_email_per_crossing_item8(app, alice, make_account, mails):
    bob = make_account("bob@example.com")
    with app.app_context():
        alerts.set_threshold(bob, 100 * CREDIT)  # Bob has nothing: below from the start
        db.session.commit()
    spend(app, alice, 6 * CREDIT)
    start = threading.Barrier(4)
    claims = []

    def worker():
        start.wait(timeout=30)
        claims.append(check(app))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claims) == 4 and sum(claims) == 2
    sent = mails()
    assert len(sent) == 2
    assert sum(f"To: {EMAIL}" in m for m in sent) == 1
    assert sum("To: bob@example.com" in m for m in sent) == 1


def test_no_alert_for_an_account_turned_off_suspended_or_without_a_threshold_item8(
    app, alice, make_account, mails
):
    carol = make_account("carol@example.com")  # no threshold at all, balance 0
    spend(app, alice, 6 * CREDIT)
    with app.app_context():
        suspend(db.session.get(Account, alice), reason="t", actor_id=None)
        db.session.commit()
    assert check(app) == 0
    with app.app_context():
        account = db.session.get(Account, alice)
        account.status = "active"
        db.session.commit()
    assert check(app) == 1  # reinstated, and still below: now it is sent
    with app.app_context():
        alerts.set_threshold(alice, None)  # turned off before the worker sent it
        db.session.commit()
    assert mails() == []
    with app.app_context():
        assert db.session.get(Account, carol).low_balance_alert_sent_at is None


def test_the_threshold_is_parsed_exactly_and_bounded_item8():
    assert alerts.parse_threshold(" 12.5 ") == 12_500_000_000
    assert alerts.parse_threshold("0.000000001") == 1
    assert alerts.parse_threshold("1000000") == alerts.MAX_THRESHOLD_NANOCREDITS
    for bad in ("", "abc", "0", "-1", "1e2", "1000000.000000001", "1,5"):
        with pytest.raises(alerts.ThresholdError):
            alerts.parse_threshold(bad)


def test_the_scheduler_runs_the_check_every_minute_item8(app):
    from rq.cron import CronScheduler

    from worker import register_cron_jobs

    scheduler = CronScheduler(connection=app.extensions["onekey_redis"])
    register_cron_jobs(scheduler)
    jobs = {job.func.__name__: job for job in scheduler.get_jobs()}
    assert jobs["check_low_balances_job"].interval == 60
    assert jobs["check_low_balances_job"].queue_name == "default"
