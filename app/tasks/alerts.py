"""The low-balance check, run by the cron scheduler every minute, and the email it queues."""

from __future__ import annotations

from flask import current_app

from app.extensions import db, get_queue
from app.services import alerts, notices
from app.services.mail import send_email
from app.tasks.mail import MAIL_RETRY

LOW_BALANCE_CHECK_INTERVAL_SECONDS = 60


def check_low_balances_job() -> int:
    """Re-arm the alerts of balances that recovered, claim those whose balance fell below the
    threshold, commit, then queue one email per claim; returns how many were claimed."""
    alerts.rearm_recovered()
    claimed = alerts.claim_due()
    db.session.commit()
    base = notices.base_url()
    for account_id in claimed:
        get_queue("default").enqueue(
            send_low_balance_alert_job,
            account_id,
            base,
            result_ttl=0,
            failure_ttl=24 * 3600,
            retry=MAIL_RETRY,
        )
    return len(claimed)


def send_low_balance_alert_job(account_id: int, base_url: str) -> None:
    account = alerts.alert_still_due(account_id)
    if account is None:
        return
    subject, body = alerts.low_balance_notice(account, base_url)
    send_email(current_app.config, account.email, subject, body)
