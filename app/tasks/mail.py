"""Mail is sent by the worker, after the request that asked for it has committed.

Jobs carry ids, not secrets: the password-reset link is made in the worker, so it never sits in Redis.
"""

from __future__ import annotations

from flask import current_app
from rq import Retry

from app.extensions import db, get_queue
from app.models import Account, AccountRequest
from app.services import notices
from app.services.accounts import password_reset_token
from app.services.mail import send_email

MAIL_RETRY = Retry(max=3, interval=[10, 60, 300])


def send_password_reset_job(account_id: int, base_url: str) -> None:
    account = db.session.get(Account, account_id)
    if account is None or account.is_ended:
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


def send_signup_attempt_notice_job(account_id: int, base_url: str) -> None:
    """Tell an address's owner that someone tried to sign up with it (the page did not say so)."""
    account = db.session.get(Account, account_id)
    if account is None or account.is_ended:
        return
    send_email(
        current_app.config,
        account.email,
        "Someone tried to sign up to OneKey with your address",
        "Someone tried to create a OneKey account with this email address, which already has one.\n\n"
        f"If it was you, sign in at {base_url}/login, or reset your password at "
        f"{base_url}/password/forgot.\n\n"
        "If it was not you, ignore this message; nothing about your account has changed.",
    )


def send_request_update_job(request_id: int, base_url: str) -> None:
    """Tell the customer how their refund, closure or termination ended."""
    request = db.session.get(AccountRequest, request_id)
    if request is None:
        return
    subject, body = notices.request_update(request, base_url)
    send_email(current_app.config, request.account.email, subject, body)


def send_status_notice_job(account_id: int, base_url: str) -> None:
    """Tell the customer their account was suspended (or reinstated), with the reason shared."""
    account = db.session.get(Account, account_id)
    if account is None:
        return
    subject, body = notices.status_change(account, base_url)
    send_email(current_app.config, account.email, subject, body)


def enqueue_request_update(request_id: int) -> None:
    _enqueue(send_request_update_job, request_id, notices.base_url())


def enqueue_status_notice(account_id: int) -> None:
    _enqueue(send_status_notice_job, account_id, notices.base_url())


def enqueue_password_reset(account_id: int, base_url: str) -> None:
    _enqueue(send_password_reset_job, account_id, base_url)


def enqueue_signup_attempt_notice(account_id: int, base_url: str) -> None:
    _enqueue(send_signup_attempt_notice_job, account_id, base_url)


def _enqueue(job, *args) -> None:
    get_queue("default").enqueue(job, *args, result_ttl=0, failure_ttl=24 * 3600, retry=MAIL_RETRY)
