"""The second factor in an admin's session: what an admin still owes before the admin area opens
(enrolment, or a code), and the idle timeout. The codes themselves are app/services/totp.py's.

A session's second factor counts for the login id that verified it, so a new sign-in, a password
change or a reset (each a new session or a new session version) asks for a code again; and only
while the session makes an admin request at least every ADMIN_IDLE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import current_app, redirect, request, session, url_for

from app.models import Account

# The login id (account and session version) whose second factor this session verified.
SECOND_FACTOR_FOR = "second_factor_for"
# When the session last made an admin request (Unix seconds).
ADMIN_SEEN_AT = "admin_seen_at"
# Sent by a polling element (hx-headers): a poll is not activity, so a page left open still goes
# idle, and its next poll sends the page to the code.
POLL_HEADER = "X-OneKey-Poll"

ENROL = "auth.two_factor_setup"
VERIFY = "auth.two_factor_verify"


def is_fresh(account: Account) -> bool:
    """Whether this session verified the account's second factor and has not been idle since."""
    if session.get(SECOND_FACTOR_FOR) != account.get_id():
        return False
    seen_at = session.get(ADMIN_SEEN_AT)
    if not isinstance(seen_at, int):
        return False
    return time.time() - seen_at < current_app.config["ADMIN_IDLE_TIMEOUT_SECONDS"]


def missing_step(account: Account) -> str | None:
    """The endpoint an admin must pass before the admin area (enrolment, or a code), or None."""
    if not account.has_second_factor:
        return ENROL
    if not is_fresh(account):
        return VERIFY
    return None


def mark_verified(account: Account) -> None:
    session[SECOND_FACTOR_FOR] = account.get_id()
    session[ADMIN_SEEN_AT] = int(time.time())


def record_admin_activity() -> None:
    if request.headers.get(POLL_HEADER) != "true":
        session[ADMIN_SEEN_AT] = int(time.time())


def _return_path() -> str | None:
    """Where the admin goes on after the code: this page; for a form or a fragment, the admin
    page it came from (htmx names it in HX-Current-URL)."""
    if request.method == "GET" and not request.htmx:
        return request.full_path.rstrip("?")
    source = urlsplit(request.headers.get("HX-Current-URL") or request.referrer or "")
    if source.netloc not in ("", request.host) or not source.path.startswith("/admin"):
        return None
    return source.path + (f"?{source.query}" if source.query else "")


def send_to(step: str):
    """Send the request to `step`, then back. An HTMX request is told to load the page instead
    (HX-Redirect): the code page swapped into a part of an admin page would make no sense."""
    target = url_for(step, next=_return_path())
    if request.htmx:
        return "", 401, {"HX-Redirect": target}
    return redirect(target)
