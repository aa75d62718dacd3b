"""The worker side of Stripe webhooks."""

from __future__ import annotations

from rq import Retry

from app.extensions import db, get_queue
from app.models import StripeEvent
from app.services.payments import process_event

EVENT_RETRY = Retry(max=8, interval=[5, 30, 120, 600, 1800])


def process_stripe_event_job(event_id: str) -> str | None:
    """Safe to run twice: the credit is keyed by the PaymentIntent, the event marked processed."""
    try:
        outcome = process_event(event_id)
        db.session.commit()
        return outcome
    except Exception as exc:
        db.session.rollback()
        event = db.session.get(StripeEvent, event_id)
        if event is not None:
            event.error = f"{type(exc).__name__}: {exc}"[:500]
            db.session.commit()
        raise


def enqueue_stripe_event(event_id: str) -> None:
    get_queue("billing").enqueue(process_stripe_event_job, event_id, retry=EVENT_RETRY)
