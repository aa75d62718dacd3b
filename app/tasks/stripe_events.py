"""The worker side of Stripe: webhook events, and the reconciliation that catches missed ones."""

from __future__ import annotations

from flask import current_app
from rq import Retry

from app.extensions import db, get_queue
from app.models import StripeEvent
from app.services.payments import process_event, reconcile_payments
from app.tasks.mail import enqueue_status_notice

EVENT_RETRY = Retry(max=8, interval=[5, 30, 120, 600, 1800])
RECONCILE_INTERVAL_SECONDS = 600


def process_stripe_event_job(event_id: str) -> str | None:
    """Safe to run twice: every movement is keyed by a Stripe id, the event marked processed."""
    try:
        outcome = process_event(event_id)
        db.session.commit()
        for account_id in db.session.info.pop("suspended_account_ids", []):
            enqueue_status_notice(account_id)
        return outcome
    except Exception as exc:
        db.session.rollback()
        db.session.info.pop("suspended_account_ids", None)
        event = db.session.get(StripeEvent, event_id)
        if event is not None:
            event.error = f"{type(exc).__name__}: {exc}"[:500]
            db.session.commit()
        raise


def enqueue_stripe_event(event_id: str) -> None:
    get_queue("billing").enqueue(process_stripe_event_job, event_id, retry=EVENT_RETRY)


def reconcile_payments_job(actor_id: int | None = None) -> dict:
    """Apply successes the webhooks missed and expire stale purchases; the run is recorded.
    Without Stripe settings there is nothing to reconcile, and the scheduled run does nothing."""
    if not current_app.config["STRIPE_SECRET_KEY"]:
        return {"skipped": "STRIPE_SECRET_KEY is not set"}
    run = reconcile_payments(actor_id=actor_id)
    db.session.commit()
    summary = {
        "run": run.id,
        "examined": run.intents_examined,
        "credited": run.credited,
        "flagged": run.flagged,
        "expired": run.expired,
        "error": run.error,
    }
    if run.error:
        raise RuntimeError(f"reconciliation could not reach Stripe: {run.error}")
    return summary


def enqueue_reconciliation(actor_id: int | None = None) -> None:
    get_queue("billing").enqueue(reconcile_payments_job, actor_id, job_timeout=900)
