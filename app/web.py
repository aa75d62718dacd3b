"""Request-wide behaviour shared by every page: sessions, errors, security headers, template helpers."""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import urlsplit

from flask import Flask, current_app, g, render_template, session
from flask_login import current_user, login_user
from flask_wtf.csrf import CSRFError

from app import heartbeat
from app.extensions import db, login_manager
from app.models import Account
from app.services.money import display_credits
from app.services.pricing import class_label
from app.services.terms import current_terms_version

# Pages load scripts and styles only from this origin (plus Stripe.js where a page needs it).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
# Stripe's 3-D Secure challenge frames come from here (besides the Stripe.js origin).
STRIPE_FRAME_ORIGIN = "https://hooks.stripe.com"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def stripe_content_security_policy(config) -> str:
    """The policy of a page that mounts Stripe.js: its script, frames and API calls admitted."""
    js = _origin(config["STRIPE_JS_URL"])
    api = _origin(config["STRIPE_API_BASE"])
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        f"script-src 'self' {js}; connect-src 'self' {js} {api}; "
        f"frame-src {js} {STRIPE_FRAME_ORIGIN}; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )


# When the session was signed in (Unix seconds): it ends SESSION_ABSOLUTE_LIFETIME_SECONDS later.
SIGNED_IN_AT = "signed_in_at"


def start_session(account: Account) -> None:
    """Sign `account` in with a fresh session: nothing from before sign-in carries over (fixation)."""
    session.clear()
    login_user(account)
    session[SIGNED_IN_AT] = int(time.time())
    session.permanent = True


def _session_is_within_lifetime() -> bool:
    signed_in_at = session.get(SIGNED_IN_AT)
    if not isinstance(signed_in_at, int):
        return False
    return time.time() - signed_in_at < current_app.config["SESSION_ABSOLUTE_LIFETIME_SECONDS"]


@login_manager.user_loader
def load_account(login_id: str) -> Account | None:
    """Load the signed-in account on every request, so a status change applies at once.

    The login id carries the session version: bumping it (suspension, password change, logout)
    ends every session issued before. A session also ends at its absolute lifetime, however
    active: the cookie's own lifetime slides with every request.
    """
    if not _session_is_within_lifetime():
        return None
    account_id, _, version = login_id.partition(":")
    if not account_id.isdigit() or not version.isdigit():
        return None
    account = db.session.get(Account, int(account_id))
    if account is None or account.session_version != int(version):
        return None
    if account.is_ended:
        return None
    return account


def register_web_hooks(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @app.before_request
    def assign_request_id() -> None:
        # Always ours: the id keys a request's slot in the per-account concurrency limit, so a
        # client-chosen one would let every request share one slot. It names this process, so the
        # holds of a process that died are found (app/heartbeat.py).
        g.request_id = heartbeat.new_request_id(
            app.extensions["onekey_redis"],
            app.config["HEARTBEAT_INTERVAL_SECONDS"],
            app.config["HEARTBEAT_TTL_SECONDS"],
        )

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Request-Id", g.get("request_id", ""))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config.get("STRICT_TRANSPORT_SECURITY"):
            response.headers.setdefault(
                "Strict-Transport-Security", app.config["STRICT_TRANSPORT_SECURITY"]
            )
        if response.mimetype == "text/html":
            policy = (
                stripe_content_security_policy(app.config)
                if g.get("stripe_page")
                else CONTENT_SECURITY_POLICY
            )
            response.headers.setdefault("Content-Security-Policy", policy)
            response.vary.add("HX-Request")
            if current_user.is_authenticated:
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        message = "Your form expired or was not sent from this site. Reload the page and try again."
        return render_template("errors/error.html", code=400, message=message), 400

    @app.errorhandler(404)
    def not_found(error):
        return render_template("errors/error.html", code=404, message="Page not found."), 404

    @app.errorhandler(405)
    def method_not_allowed(error):
        return render_template(
            "errors/error.html", code=405, message="That method is not allowed here."
        ), 405

    @app.errorhandler(413)
    def too_large(error):
        return render_template("errors/error.html", code=413, message="The form is too large."), 413

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return render_template(
            "errors/error.html", code=500, message="Something went wrong on our side."
        ), 500

    @app.context_processor
    def template_globals():
        return {
            "support_email": app.config["SUPPORT_EMAIL"],
            "terms_version": current_terms_version(),
            "now": datetime.now,
        }

    app.jinja_env.filters["credits"] = display_credits
    app.jinja_env.globals["class_label"] = class_label
    app.jinja_env.filters["datetime"] = _format_datetime


def _format_datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"
