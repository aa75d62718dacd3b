"""Lifecycle jobs: refunds, closures and terminations, carried out exactly once.

Each run takes a lease on its request, stores every refund part before Stripe is called and
commits after each step, so a run that dies anywhere is picked up by the next run (RQ's retry, or
the scheduler's sweep of stalled requests) without refunding or debiting twice.
"""

from __future__ import annotations

import logging

import stripe
from rq import Retry

from app.extensions import db, get_queue
from app.models import AccountRequest
from app.services import lifecycle, refunds
from app.services.refunds import DEFINITE_STRIPE_ERRORS, RefundError
from app.tasks.mail import enqueue_request_update

log = logging.getLogger("onekey.lifecycle")
LIFECYCLE_RETRY = Retry(max=5, interval=[10, 60, 300, 900, 1800])
JOB_TIMEOUT = 600
STALLED_SWEEP_INTERVAL_SECONDS = 300


def process_request_job(request_id: int) -> str:
    """Carry out an approved refund, closure or termination; safe to run any number of times."""
    request = refunds.begin_run(request_id)
    if request is None:
        db.session.rollback()
        return "nothing to do"
    db.session.commit()
    try:
        outcome = _carry_out(request)
    except Exception:
        db.session.rollback()
        request = db.session.get(AccountRequest, request_id)
        if request is not None and request.state == "processing":
            refunds.end_run(request)  # the retry may take it at once
            db.session.commit()
        raise
    if outcome in ("done", "failed"):
        enqueue_request_update(request_id)
    return outcome


def _carry_out(request: AccountRequest) -> str:
    if request.kind != "refund":
        waiting = lifecycle.in_flight(request)
        if waiting:
            request.waiting_for = waiting
            refunds.end_run(request)
            db.session.commit()
            get_queue("lifecycle").enqueue_in(
                lifecycle.IN_FLIGHT_RECHECK, process_request_job, request.id, **_job_options()
            )
            return "waiting"
        request.waiting_for = None
    while True:
        try:
            part = refunds.next_part(request)
        except RefundError as exc:
            refunds.fail(request, str(exc), part=None, definite=True)
            db.session.commit()
            return "failed"
        if part is None:
            break
        db.session.commit()  # the part is on record before Stripe is asked to make it
        try:
            refund = refunds.issue_part(part)
        except stripe.StripeError as exc:
            db.session.rollback()
            log.warning("refund part %s: %s", part.id, type(exc).__name__)
            refunds.fail(
                request,
                refunds.stripe_message(exc),
                part=part,
                definite=isinstance(exc, DEFINITE_STRIPE_ERRORS),
            )
            db.session.commit()
            return "failed"
        if refund is None:
            refunds.drop_part(part)
        else:
            refunds.record_part(part, refund)
        db.session.commit()
    if request.kind == "refund":
        refunds.finish(request)
    else:
        lifecycle.complete(request)
    db.session.commit()
    return "done"


def _job_options() -> dict:
    return {"retry": LIFECYCLE_RETRY, "job_timeout": JOB_TIMEOUT, "failure_ttl": 30 * 24 * 3600}


def enqueue_request(request_id: int) -> None:
    """Queue the job of an approved request; call it after the commit that approved it."""
    get_queue("lifecycle").enqueue(process_request_job, request_id, **_job_options())


def resume_stalled_requests_job() -> int:
    """Queue again every request whose job was lost (see lifecycle.stalled_requests)."""
    stalled = lifecycle.stalled_requests()
    db.session.rollback()
    for request_id in stalled:
        enqueue_request(request_id)
    return len(stalled)
