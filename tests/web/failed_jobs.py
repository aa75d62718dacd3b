"""A job that fails for real: a reconciliation run by a real worker while Stripe is unreachable."""

from __future__ import annotations

from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from app.extensions import db, get_queue
from app.services import stripe_api
from app.tasks import stripe_events as stripe_tasks

UNREACHABLE_STRIPE = "http://127.0.0.1:9"


def unreachable_stripe(app, monkeypatch) -> None:
    """Payments configured against an address where nothing listens, tried once (not after the
    SDK's backoff), so a call to Stripe fails at once."""
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_test_unreachable")
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", UNREACHABLE_STRIPE)
    monkeypatch.setattr(stripe_api, "STRIPE_NETWORK_RETRIES", 0)


def work_billing_queue(app) -> None:
    with app.app_context():
        queue = get_queue("billing")
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
        db.session.remove()


def failed_reconciliation(app) -> str:
    """Queue a reconciliation and let a worker run it against the unreachable Stripe (set up by
    `unreachable_stripe`); returns the id of the job, now in the billing queue's failed registry."""
    with app.app_context():
        stripe_tasks.enqueue_reconciliation(actor_id=None)
        (job_id,) = get_queue("billing").job_ids
    work_billing_queue(app)
    with app.app_context():
        assert job_id in FailedJobRegistry("billing", connection=get_queue("billing").connection)
    return job_id
