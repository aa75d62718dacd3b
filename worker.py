"""The RQ worker (`python worker.py`) on queues billing, lifecycle and default, and the cron scheduler
(`python worker.py --scheduler`: run exactly one, since RQ's cron scheduler takes no lock)."""

from __future__ import annotations

import argparse
import logging
import os
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Worker
from rq.cron import CronScheduler

from app import create_app
from app.extensions import db
from app.tasks import QUEUES
from app.tasks.alerts import LOW_BALANCE_CHECK_INTERVAL_SECONDS, check_low_balances_job
from app.tasks.lifecycle import STALLED_SWEEP_INTERVAL_SECONDS, resume_stalled_requests_job
from app.tasks.maintenance import (
    ORPHAN_SWEEP_INTERVAL_SECONDS,
    RETIREMENT_CHECK_INTERVAL_SECONDS,
    expire_holds_job,
    release_orphaned_holds_job,
    retire_due_models_job,
)
from app.tasks.stripe_events import RECONCILE_INTERVAL_SECONDS, reconcile_payments_job
from app.tasks.usage import FOLD_INTERVAL_SECONDS, fold_usage_job

log = logging.getLogger("onekey.worker")


class AppWorker(Worker):
    """Runs each job inside the app context, on database connections of the process running it."""

    app = None

    def perform_job(self, job, queue, execution) -> bool:
        if getattr(self, "_engine_pid", None) != os.getpid():
            # A forked work horse must not share the parent's pooled connections.
            with self.app.app_context():
                db.engine.dispose(close=False)
            self._engine_pid = os.getpid()
        with self.app.app_context():
            try:
                return super().perform_job(job, queue, execution)
            finally:
                db.session.remove()


def wait_for_redis(connection, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.ping()
            return
        except (RedisConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def register_cron_jobs(scheduler: CronScheduler) -> None:
    scheduler.register(expire_holds_job, queue_name="default", interval=60, job_timeout=300)
    scheduler.register(
        release_orphaned_holds_job,
        queue_name="default",
        interval=ORPHAN_SWEEP_INTERVAL_SECONDS,
        job_timeout=60,
    )
    scheduler.register(
        reconcile_payments_job,
        queue_name="billing",
        interval=RECONCILE_INTERVAL_SECONDS,
        job_timeout=900,
    )
    scheduler.register(
        resume_stalled_requests_job,
        queue_name="lifecycle",
        interval=STALLED_SWEEP_INTERVAL_SECONDS,
        job_timeout=300,
    )
    scheduler.register(
        check_low_balances_job,
        queue_name="default",
        interval=LOW_BALANCE_CHECK_INTERVAL_SECONDS,
        job_timeout=120,
    )
    scheduler.register(
        fold_usage_job, queue_name="default", interval=FOLD_INTERVAL_SECONDS, job_timeout=900
    )
    scheduler.register(
        retire_due_models_job,
        queue_name="default",
        interval=RETIREMENT_CHECK_INTERVAL_SECONDS,
        job_timeout=120,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheduler", action="store_true", help="run the cron scheduler instead")
    parser.add_argument("--burst", action="store_true", help="work until the queues are empty")
    args = parser.parse_args()

    app = create_app()
    connection = app.extensions["onekey_redis"]
    wait_for_redis(connection)
    if args.scheduler:
        scheduler = CronScheduler(connection=connection, name=f"onekey-cron-{os.getpid()}")
        register_cron_jobs(scheduler)
        scheduler.start()
        return
    AppWorker.app = app
    queues = [Queue(name, connection=connection) for name in QUEUES]
    AppWorker(queues, connection=connection).work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
