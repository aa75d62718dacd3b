"""Mail is sent by the worker, after the request that asked for it has committed."""

from __future__ import annotations

from flask import current_app

from app.services.mail import send_email


def send_email_job(to: str, subject: str, body: str) -> None:
    send_email(current_app.config, to, subject, body)


def enqueue_email(to: str, subject: str, body: str) -> None:
    """Queue a message; the job is short-lived in Redis since it may carry a reset link."""
    from rq import Retry

    from app.extensions import get_queue

    get_queue("default").enqueue(
        send_email_job,
        to,
        subject,
        body,
        result_ttl=0,
        failure_ttl=24 * 3600,
        retry=Retry(max=3, interval=[10, 60, 300]),
    )
