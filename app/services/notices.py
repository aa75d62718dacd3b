"""What the customer is told by email about their account: refunds, closure, termination,
suspension. Plain text; amounts in dollars; only the reason an admin chose to share."""

from __future__ import annotations

import os

from flask import current_app, has_request_context, request

from app.models import Account, AccountRequest
from app.services.money import display_credits
from app.services.payments import display_dollars


def base_url() -> str:
    """Where emailed links point: PUBLIC_BASE_URL (required in production), else this request's
    host, else (a job in development) the local server."""
    configured = current_app.config["PUBLIC_BASE_URL"]
    if configured:
        return configured
    if has_request_context():
        return request.host_url.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"


def _shared(message: str | None) -> str:
    return f"\n\nFrom our team: {message}" if message else ""


def request_update(req: AccountRequest, base: str) -> tuple[str, str]:
    """Subject and body of the message about a request that ended (done, denied or failed)."""
    link = f"{base}/credits/refunds/{req.id}"
    support = current_app.config["SUPPORT_EMAIL"]
    refunded = display_dollars(req.refunded_cents)
    if req.kind == "refund":
        if req.state == "done":
            return "Your OneKey refund is on its way", (
                f"We refunded {refunded} of unused credit to the card you paid with. Card refunds "
                f"usually appear within 5 to 10 business days.\n\nDetails: {link}"
            )
        if req.state == "denied":
            return "Your OneKey refund request was declined", (
                f"We did not refund the {display_dollars(req.requested_cents)} you asked for; "
                f"the credit is available to spend again.{_shared(req.customer_message)}\n\n"
                f"Details: {link}\nQuestions: {support}"
            )
        return "Your OneKey refund could not be completed", (
            "Our payment provider could not complete your refund"
            + (f" ({refunded} of it was refunded)" if req.refunded_cents else "")
            + ". We will look into it and try again; the credit not refunded is available to "
            f"spend.\n\nDetails: {link}\nQuestions: {support}"
        )
    ended = {"closure": "closed", "termination": "terminated"}[req.kind]
    if req.state == "done":
        forfeited = max(req.forfeited_nanocredits or 0, 0)
        body = (
            f"Your OneKey account is {ended}. Its API keys no longer work and you cannot sign in."
            f"\n\nRefunded to your card: {refunded}."
            f"\nUnused credit not refunded (forfeited): {display_credits(forfeited)} credits."
        )
        if req.kind == "termination":
            body += _shared(req.customer_message) or (
                "\n\nThe account was terminated for a violation of the Terms of Service."
            )
        return f"Your OneKey account is {ended}", f"{body}\n\nQuestions: {support}"
    if req.state == "denied":
        return "Your OneKey account stays open", (
            "We did not close your account; you can sign in and create new API keys."
            f"{_shared(req.customer_message)}\n\nQuestions: {support}"
        )
    return "Closing your OneKey account is delayed", (
        "We could not complete the refund that comes with closing your account. We will look into "
        f"it and finish closing it.\n\nQuestions: {support}"
    )


def status_change(account: Account, base: str) -> tuple[str, str]:
    """Subject and body of the message about a suspension, or its end."""
    support = current_app.config["SUPPORT_EMAIL"]
    if account.status == "suspended":
        shared = account.status_message or "a violation of the Terms of Service"
        return "Your OneKey account is suspended", (
            f"Your OneKey account is suspended: {shared}.\n\nIts API keys are refused until the "
            f"suspension ends. You can still sign in to see your balance and usage at {base}/login."
            f"\n\nQuestions: {support}"
        )
    return "Your OneKey account is active again", (
        "The suspension of your OneKey account has ended; its API keys work again."
        f"{_shared(account.status_message)}\n\n{base}/login"
    )
