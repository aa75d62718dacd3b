"""Billing jobs."""

from __future__ import annotations

import logging

from rq import Retry

from app.extensions import db, get_queue
from app.services.usage import record_usage

log = logging.getLogger("onekey.billing")
SETTLEMENT_RETRY = Retry(max=10, interval=[5, 15, 60, 300, 900])


def record_usage_job(values: dict) -> bool:
    """A settlement the web process could not commit (the database was away), done later.

    Safe to run twice: a hold is settled once whoever gets there first.
    """
    done = record_usage(values, connection=db.session.connection())
    db.session.commit()
    return done


def enqueue_settlement(values: dict) -> None:
    get_queue("billing").enqueue(
        record_usage_job, values, retry=SETTLEMENT_RETRY, failure_ttl=30 * 24 * 3600
    )
