"""Mail is sent by the worker, after the request that asked for it has committed.

Jobs carry ids, not secrets: the password-reset link is made in the worker, so it never sits in Redis.
"""

from __future__ import annotations

from flask import current_app
from rq import Retry

from app.extensions import db, get_queue
from app.models import Account
from app.services.accounts import password_reset_token
from app.services.mail import send_email

MAIL_RETRY = Retry(max=3, interval=[10, 60, 300])


def send_password_reset_job(account_id: int, base_url: str) -> None:
    account = db.session.get(Account, account_id)
    if account is None or account.status == "terminated":
        return
    link = f"{base_url}/password/reset/{password_reset_token(account)}"
    send_email(
        current_app.config,
        account.email,
        "Reset your OneKey password",
        "Someone asked to reset the password of your OneKey account.\n\n"
        f"Choose a new password here (the link works once, for one hour):\n{link}\n\n"
        "If it was not you, ignore this message; your password stays as it is.",
    )


def enqueue_password_reset(account_id: int, base_url: str) -> None:
    get_queue("default").enqueue(
        send_password_reset_job,
        account_id,
        base_url,
        result_ttl=0,
        failure_ttl=24 * 3600,
        retry=MAIL_RETRY,
    )
