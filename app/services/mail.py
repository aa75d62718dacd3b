"""Outgoing mail: SMTP when MAIL_SMTP_URL is set, the log otherwise (development)."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

log = logging.getLogger("onekey.mail")


def send_email(config: dict, to: str, subject: str, body: str) -> None:
    """Send one plain-text message. Raises smtplib errors so the job is retried."""
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    url = config.get("MAIL_SMTP_URL")
    if not url:
        log.info(
            "mail not sent (MAIL_SMTP_URL is unset)\nTo: %s\nSubject: %s\n\n%s", to, subject, body
        )
        return
    parts = urlsplit(url)
    smtp_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with smtp_class(
        parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 587)
    ) as smtp:
        if parts.scheme == "smtp+starttls":
            smtp.starttls()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)
