"""The RQ worker process runs jobs in the app context; the cron job releases expired holds."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.extensions import db, get_queue
from app.models import Account, Hold
from app.models.types import utcnow
from app.services.ledger import grant_credits, place_hold
from app.tasks.maintenance import expire_holds_job

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_worker_process_runs_the_expire_holds_job(app, make_account):
    account_id = make_account("user@example.com")
    with app.app_context():
        grant_credits(account_id, 10_000, note="t", idempotency_key="g")
        hold = place_hold(
            account_id=account_id,
            amount_nanocredits=4_000,
            expires_at=utcnow() - timedelta(seconds=1),
        )
        hold_id = hold.id
        db.session.commit()
        get_queue("default").enqueue(expire_holds_job)
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""),
        "REDIS_URL": app.config["REDIS_URL"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "KEY_HASH_SECRET": app.config["KEY_HASH_SECRET"],
    }
    result = subprocess.run(
        [sys.executable, "worker.py", "--burst"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Job OK" in result.stderr + result.stdout
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "expired"
        assert db.session.get(Account, account_id).held_nanocredits == 0


def test_cron_registers_the_hold_sweeps_the_reconciliation_and_the_stalled_request_sweep(app):
    from rq.cron import CronScheduler

    from worker import register_cron_jobs

    scheduler = CronScheduler(connection=app.extensions["onekey_redis"])
    register_cron_jobs(scheduler)
    jobs = {job.func.__name__: job for job in scheduler.get_jobs()}
    assert jobs["expire_holds_job"].interval == 60
    assert jobs["reconcile_payments_job"].interval == 600
    assert jobs["reconcile_payments_job"].queue_name == "billing"
    assert jobs["resume_stalled_requests_job"].interval == 300
    assert jobs["resume_stalled_requests_job"].queue_name == "lifecycle"
    assert jobs["release_orphaned_holds_job"].interval == 30
