"""The jobs page (issue 11, item 4): queues, workers, failed jobs and their retry, the cron
scheduler's runs and heartbeat; and reconciliation's "Run now" without Stripe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from app.admin import jobs as jobs_page
from app.config import PROJECT_ROOT
from app.extensions import db, get_queue, get_redis
from app.models import Account, AuditLogEntry
from tests.helpers import Browser
from tests.web.failed_jobs import failed_reconciliation, unreachable_stripe, work_billing_queue
from worker import register_cron_jobs

HX = {"HX-Request": "true"}


class _Registrations:
    """Stands where worker.register_cron_jobs expects a scheduler, to read what it registers."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def register(self, func, **options) -> None:
        self.names.append(func.__name__)


def _periodic_jobs() -> tuple[str, ...]:
    registrations = _Registrations()
    register_cron_jobs(registrations)
    return tuple(registrations.names)


# Every job the scheduler runs, so a job added later is on the page's test too.
PERIODIC_JOBS = _periodic_jobs()


def words(html: str) -> str:
    """The page with its runs of whitespace collapsed, as it reads."""
    return " ".join(html.split())


def audit_entries(app) -> list[tuple[str, dict | None]]:
    with app.app_context():
        return [(e.action, e.details) for e in db.session.scalars(select(AuditLogEntry))]


def billing_job_ids(app) -> list[str]:
    with app.app_context():
        return get_queue("billing").job_ids


def failed_ids(app) -> list[str]:
    with app.app_context():
        return FailedJobRegistry("billing", connection=get_redis()).get_job_ids(cleanup=False)


def retry(admin: Browser, job_id: str, **kwargs):
    return admin.post_form("/admin/jobs", {}, action=f"/admin/jobs/{job_id}/retry", **kwargs)


def test_issue11_item4_the_jobs_page_is_404_to_anonymous_customers_and_suspended_admins(
    app, make_account
):
    """Under /admin, so the area's one guard covers it (before the CSRF check, too)."""
    make_account("customer@example.com")
    former_admin = make_account("former@example.com", admin=True)
    with app.app_context():
        db.session.get(Account, former_admin).status = "suspended"
        db.session.commit()
    for email in (None, "customer@example.com", "former@example.com"):
        browser = Browser(app.test_client())
        if email:
            browser.login(email)
        for headers in ({}, HX):
            assert browser.client.get("/admin/jobs", headers=headers).status_code == 404
            retried = browser.client.post("/admin/jobs/some-job/retry", headers=headers)
            assert retried.status_code == 404


def test_issue11_item4_a_failed_job_is_listed_and_retried_once(app, admin, monkeypatch):
    unreachable_stripe(app, monkeypatch)
    job_id = failed_reconciliation(app)

    page = admin.get("/admin/jobs").get_data(as_text=True)
    failed = page.split('id="failed-billing"')[1].split('id="failed-lifecycle"')[0]
    assert "1 failed" in failed
    assert job_id in failed
    assert "app.tasks.stripe_events.reconcile_payments_job(None)" in failed
    assert "RuntimeError: reconciliation could not reach Stripe" in failed
    assert f'action="/admin/jobs/{job_id}/retry"' in failed
    assert '<tr id="queue-billing">' in page

    assert admin.client.post(f"/admin/jobs/{job_id}/retry").status_code == 400  # no CSRF token
    assert failed_ids(app) == [job_id]

    done = retry(admin, job_id, headers=HX)
    assert done.status_code == 200
    fragment = done.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="jobs-failed"')
    assert (
        f"Job {job_id} (app.tasks.stripe_events.reconcile_payments_job) is queued again."
        in fragment
    )
    assert f'id="job-{job_id}"' not in fragment
    counts = fragment.split('<section id="jobs-status"')[1]
    assert 'hx-swap-oob="true"' in counts.split(">")[0]
    billing = counts.split('<tr id="queue-billing">')[1].split("</tr>")[0]
    assert words(billing).startswith('<th scope="row">billing</th> <td class="num">1</td>')
    assert failed_ids(app) == []
    assert billing_job_ids(app) == [job_id]
    ((action, details),) = audit_entries(app)
    assert action == "job.retry"
    assert details["job"] == job_id
    assert details["queue"] == "billing"
    assert details["function"] == "app.tasks.stripe_events.reconcile_payments_job"
    assert details["error"].startswith("RuntimeError: reconciliation could not reach Stripe")

    again = retry(admin, job_id, headers=HX)
    assert again.status_code == 409
    assert f"Job {job_id} has not failed (queued); there is nothing to retry." in again.get_data(
        as_text=True
    )
    assert billing_job_ids(app) == [job_id]
    assert len(audit_entries(app)) == 1
    assert retry(admin, "no-such-job").status_code == 404

    # The retried job really runs again (and, Stripe still unreachable, fails again).
    work_billing_queue(app)
    assert failed_ids(app) == [job_id]
    plain = retry(admin, job_id)
    assert plain.status_code == 302
    assert "is queued again" in admin.get(plain.headers["Location"]).get_data(as_text=True)


def scheduler_process(app) -> subprocess.Popen:
    """`python worker.py --scheduler`, as the Procfile runs it, on the tests' database and Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""),
        "REDIS_URL": app.config["REDIS_URL"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "KEY_HASH_SECRET": app.config["KEY_HASH_SECRET"],
    }
    return subprocess.Popen(
        [sys.executable, "worker.py", "--scheduler"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def periodic_rows(page: str) -> dict[str, str]:
    return {name: page.split(f'id="cron-{name}"')[1].split("</tr>")[0] for name in PERIODIC_JOBS}


def test_issue11_item4_the_cron_schedulers_runs_and_heartbeat_are_shown(app, admin, monkeypatch):
    process = scheduler_process(app)
    try:
        with app.app_context():
            redis = get_redis()
            wait_until(lambda: len(jobs_page.scheduler_status(redis).jobs) == len(PERIODIC_JOBS))
        status = admin.get("/admin/jobs", headers=HX)
        assert status.status_code == 200
        fragment = status.get_data(as_text=True)
        assert fragment.lstrip().startswith('<section id="jobs-status"')
        assert '<mark class="status status-active">alive</mark>' in fragment
        assert f"<code>onekey-cron-{process.pid}</code>" in fragment
        assert f"(pid {process.pid})" in fragment
        rows = periodic_rows(fragment)
        assert "<td>billing</td>" in rows["reconcile_payments_job"]
        assert "600 s" in rows["reconcile_payments_job"]
        assert "30 s" in rows["release_orphaned_holds_job"]
        # Each ran once at the start, and waits in its queue for a worker.
        assert all(row.count("<li>") == 1 and ">queued</mark>" in row for row in rows.values())

        # A worker runs them: the reconciliation tells why it did nothing (no Stripe key).
        with app.app_context():
            queues = [get_queue(name) for name in ("default", "billing", "lifecycle")]
            SimpleWorker(queues, connection=redis).work(burst=True)
            db.session.remove()
        rows = periodic_rows(admin.get("/admin/jobs").get_data(as_text=True))
        assert all(">finished</mark>" in row for row in rows.values())
        assert (
            "{&#39;skipped&#39;: &#39;STRIPE_SECRET_KEY is not set&#39;}"
            in rows["reconcile_payments_job"]
        )

        # Killed, it beats no more: once its last beat is older than the scheduler ever sleeps
        # (the threshold shortened here, not the clock), the page says it is not running.
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        monkeypatch.setattr(jobs_page, "SCHEDULER_ALIVE_SECONDS", 1)
        time.sleep(1.2)
        page = admin.get("/admin/jobs").get_data(as_text=True)
        assert '<mark class="status status-revoked">not running</mark>' in page
        assert f"No cron scheduler is running: <code>onekey-cron-{process.pid}</code>" in page
        assert ">finished</mark>" in periodic_rows(page)["expire_holds_job"]  # history stays
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_issue11_item4_two_schedulers_beating_are_a_warning_and_none_is_an_error(app, admin):
    with app.app_context():
        redis = get_redis()
        assert jobs_page.scheduler_status(redis).state == "none"
        page = words(admin.get("/admin/jobs").get_data(as_text=True))
        assert "No cron scheduler is running (none is registered in Redis" in page
        for name in ("first", "second"):
            CronScheduler(connection=redis, name=name).register_birth()
        assert jobs_page.scheduler_status(redis).state == "several"
        # The same beats, seen later than a scheduler ever sleeps: both dead, the newest named.
        later = time.time() + jobs_page.SCHEDULER_ALIVE_SECONDS + 1
        status = jobs_page.scheduler_status(redis, now=later)
        assert status.state == "dead"
        assert status.last_seen.name in ("first", "second")
    page = words(admin.get("/admin/jobs").get_data(as_text=True))
    assert "2 cron schedulers are beating: each one queues every periodic job." in page


def test_issue11_item4_run_now_without_stripe_says_it_was_skipped_and_queues_nothing(app, admin):
    assert app.config["STRIPE_SECRET_KEY"] == ""
    page = admin.get("/admin/reconciliation").get_data(as_text=True)
    assert "every run, scheduled or asked for, is skipped" in page

    fragment = admin.post_form(
        "/admin/reconciliation", {}, action="/admin/reconciliation/run", headers=HX
    )
    assert fragment.status_code == 409
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="reconciliation"')
    assert "Reconciliation skipped: STRIPE_SECRET_KEY is not set" in html
    assert "Nothing was queued." in html
    assert "Reconciliation queued" not in html

    plain = admin.post_form("/admin/reconciliation", {}, action="/admin/reconciliation/run")
    assert plain.status_code == 302
    shown = admin.get(plain.headers["Location"]).get_data(as_text=True)
    assert "Reconciliation skipped: STRIPE_SECRET_KEY is not set" in shown
    assert billing_job_ids(app) == []
    assert audit_entries(app) == []
