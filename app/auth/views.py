"""Sign-up, sign-in, sign-out and passwords. Messages never reveal whether an email is registered."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from app.auth import bp, two_factor
from app.auth.forms import (
    AcceptTermsForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    LoginForm,
    ResetPasswordForm,
    SecondFactorForm,
    SignupForm,
)
from app.extensions import db, get_redis
from app.models import Account
from app.services import accounts, throttle, totp
from app.services.terms import SUPPORT_EMAIL_MARKER, load_terms
from app.tasks.mail import enqueue_password_reset, enqueue_signup_attempt_notice
from app.web import start_session

SIGN_IN_FAILED = "That email and password do not match an account."
# The same whether or not the address has an account; its owner is told by email instead.
SIGNUP_REFUSED = (
    "We could not create an account with these details. "
    "If you already have one, sign in or reset your password."
)
TOO_MANY_ATTEMPTS = "Too many sign-in attempts. Try again in {minutes} minutes."
TOO_MANY_CODES = "Too many wrong codes. Try again in {minutes} minutes."
# One slash, then printable ASCII (`!` to `~`) but a backslash, and never a second slash first.
_CLEAN_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _form_errors(form, errors: dict[str, str]) -> None:
    for field_name, message in errors.items():
        field = getattr(form, field_name, None)
        if field is not None:
            field.errors = [*field.errors, message]
        else:
            flash(message, "error")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("portal.dashboard"))
    form = SignupForm()
    submitted = form.is_submitted()
    # Every problem at once: the form's own checks (required, lengths, CSRF) and the service's
    # (address, password strength, age, Terms), each field showing its first.
    valid = submitted and form.validate()
    if submitted:
        form.add_problems(
            accounts.signup_problems(
                email=form.email.data or "",
                password=form.password.data or "",
                age_confirmed=form.age_confirmed.data,
                terms_accepted=form.terms_accepted.data,
            )
        )
    if valid and not form.errors:
        try:
            account = accounts.register(
                email=form.email.data,
                password=form.password.data,
                age_confirmed=form.age_confirmed.data,
                terms_accepted=form.terms_accepted.data,
            )
        except accounts.EmailTaken as exc:
            db.session.rollback()
            form.form_errors.append(SIGNUP_REFUSED)
            config = current_app.config
            # Repeated sign-ups must not turn the notice into a way to flood someone's inbox.
            if throttle.within_limit(
                get_redis(),
                "signup-notice",
                str(exc.account_id),
                config["SIGNUP_NOTICE_MAX_PER_EMAIL"],
                config["SIGNUP_NOTICE_WINDOW_SECONDS"],
            ):
                enqueue_signup_attempt_notice(exc.account_id, _link_base_url())
        except accounts.AccountError as exc:
            db.session.rollback()
            _form_errors(form, exc.errors)
        else:
            db.session.commit()
            start_session(account)
            flash("Welcome to OneKey. Create an API key to get started.", "success")
            return redirect(url_for("portal.dashboard"))
    if not submitted:
        return render_template("auth/signup.html", form=form)
    # The page shows the password back: no cache may keep it.
    return render_template("auth/signup.html", form=form), 400, {"Cache-Control": "no-store"}


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("portal.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        config = current_app.config
        redis = get_redis()
        # Throttled under the address the account is found by: every spelling of it counts alike.
        email = accounts.throttle_email(form.email.data)
        address = _client_address()
        wait = max(
            throttle.is_throttled(redis, "login-ip", address, config["LOGIN_MAX_FAILURES_PER_IP"]),
            throttle.is_throttled(
                redis, "login-account", email, config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
            ),
        )
        if wait:
            flash(TOO_MANY_ATTEMPTS.format(minutes=_minutes(wait)), "error")
            return render_template("auth/login.html", form=form), 429, {"Retry-After": str(wait)}
        account = accounts.authenticate(email, form.password.data)
        if account is None:
            window = config["LOGIN_THROTTLE_WINDOW_SECONDS"]
            throttle.record_failure(redis, "login-ip", address, window)
            throttle.record_failure(redis, "login-account", email, window)
            flash(SIGN_IN_FAILED, "error")
            return render_template("auth/login.html", form=form), 401
        throttle.clear(redis, "login-account", email)
        if account.is_ended:
            flash(f"This account is {account.status}: it cannot sign in.", "error")
            return render_template("auth/login.html", form=form), 403
        start_session(account)
        next_page = _safe_next(request.args.get("next"))
        if account.is_admin and account.is_active_account:
            # The password alone opens the portal; the admin area waits for the second factor.
            return redirect(url_for(two_factor.missing_step(account), next=next_page))
        if accounts.needs_terms_acceptance(account):
            return redirect(url_for("auth.accept_terms", next=next_page))
        return redirect(next_page or url_for("portal.dashboard"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form), status


def _safe_next(target: str | None) -> str | None:
    """Only a clean path on this site, else None: never an open redirect, never a broken header.

    A clean path starts with one slash and holds printable ASCII only: no control characters
    (CR LF would split the Location header), no spaces, and no backslashes, which browsers read
    as slashes (`/\\evil.example` is `//evil.example` to them).
    """
    if not target or not _CLEAN_PATH.fullmatch(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _minutes(seconds: int) -> int:
    return max(1, -(-seconds // 60))


@bp.route("/terms/accept", methods=["GET", "POST"])
@login_required
def accept_terms():
    """Changed Terms, shown in full at the next sign-in; the portal waits until they are accepted
    (the API does not)."""
    next_page = _safe_next(request.args.get("next")) or url_for("portal.dashboard")
    if not accounts.needs_terms_acceptance(current_user):
        return redirect(next_page)
    form = AcceptTermsForm()
    status = 400 if form.is_submitted() else 200
    if form.validate_on_submit():
        try:
            accounts.accept_terms(current_user._get_current_object(), form.version.data)
        except accounts.AccountError as exc:
            db.session.rollback()
            form.form_errors.extend(exc.errors.values())
            status = 409
        else:
            db.session.commit()
            flash("Thank you for accepting the Terms of Service.", "success")
            return redirect(next_page)
    terms = load_terms()
    form.version.data = terms.version  # what this page shows is what its form accepts
    return render_template(
        "auth/accept_terms.html", form=form, terms=terms, support_marker=SUPPORT_EMAIL_MARKER
    ), status


@bp.post("/logout")
def logout():
    # Every session of the account ends, a copied cookie's too: the cookie is signed, not stored.
    if current_user.is_authenticated:
        accounts.end_sessions(current_user._get_current_object())
        db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("public.home"))


def _link_base_url() -> str:
    """Where emailed links point: PUBLIC_BASE_URL (required in production), else this request's host."""
    return (current_app.config["PUBLIC_BASE_URL"] or request.host_url).rstrip("/")


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        try:
            email = accounts.normalise_email(form.email.data)
        except accounts.AccountError as exc:
            _form_errors(form, exc.errors)
            return render_template("auth/forgot_password.html", form=form), 400
        config = current_app.config
        redis = get_redis()
        window = config["PASSWORD_RESET_WINDOW_SECONDS"]
        # Counted for every address, registered or not, and answered alike when over the limit:
        # the limit stops the mail without telling anything.
        per_address = throttle.within_limit(
            redis, "reset-ip", _client_address(), config["PASSWORD_RESET_MAX_PER_IP"], window
        )
        per_email = throttle.within_limit(
            redis, "reset-email", email, config["PASSWORD_RESET_MAX_PER_EMAIL"], window
        )
        account = accounts.account_by_email(email)
        if per_address and per_email and account is not None and account.status != "terminated":
            enqueue_password_reset(account.id, _link_base_url())
        flash(
            "If an account uses that address, we have sent it a link to reset the password.",
            "info",
        )
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    account = accounts.account_for_reset_token(token)
    if account is None:
        flash("That reset link is invalid or has expired. Ask for a new one.", "error")
        return redirect(url_for("auth.forgot_password"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.set_password(account, form.password.data)
        except accounts.AccountError as exc:
            db.session.rollback()
            _form_errors(form, exc.errors)
        else:
            db.session.commit()
            flash("Your password is changed. Sign in with the new one.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form, token=token)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user, form.current_password.data, form.password.data)
        except accounts.AccountError as exc:
            db.session.rollback()
            _form_errors(form, exc.errors)
        else:
            db.session.commit()
            # Other sessions ended with the new session version; this one carries on.
            start_session(current_user._get_current_object())
            flash("Your password is changed. Your other sessions are signed out.", "success")
            return redirect(url_for("portal.dashboard"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/change_password.html", form=form), status


# --- An admin's second factor (app/services/totp.py, app/auth/two_factor.py) ------------------


def _active_admin_or_404() -> Account:
    """The signed-in active admin; anyone else has no second factor to set up or enter."""
    if not (current_user.is_admin and current_user.is_active_account):
        abort(404)
    return current_user._get_current_object()


def _second_factor_wait(account: Account) -> int:
    limit = current_app.config["SECOND_FACTOR_MAX_FAILURES"]
    return throttle.is_throttled(get_redis(), "second-factor", str(account.id), limit)


def _second_factor_failed(account: Account, form: SecondFactorForm, message: str) -> None:
    db.session.rollback()
    window = current_app.config["LOGIN_THROTTLE_WINDOW_SECONDS"]
    throttle.record_failure(get_redis(), "second-factor", str(account.id), window)
    form.code.errors = [*form.code.errors, message]


def _second_factor_passed(account: Account) -> None:
    db.session.commit()
    throttle.clear(get_redis(), "second-factor", str(account.id))
    two_factor.mark_verified(account)


def _after_second_factor(account: Account, next_page: str | None):
    if accounts.needs_terms_acceptance(account):
        return redirect(url_for("auth.accept_terms", next=next_page))
    return redirect(next_page or url_for("portal.dashboard"))


def _try_code(account, form, check):
    """A submitted code, throttled like passwords: (passed, what `check(account, code)` gave,
    status, headers) — 200 for a page not yet submitted, 400 for a form that does not validate,
    429 while throttled, 401 for a wrong code."""
    if not form.validate_on_submit():
        return False, None, 400 if form.is_submitted() else 200, {}
    wait = _second_factor_wait(account)
    if wait:
        flash(TOO_MANY_CODES.format(minutes=_minutes(wait)), "error")
        return False, None, 429, {"Retry-After": str(wait)}
    try:
        result = check(account, form.code.data)
    except totp.TwoFactorError as exc:
        _second_factor_failed(account, form, str(exc))
        return False, None, 401, {}
    _second_factor_passed(account)
    return True, result, 200, {}


@bp.route("/auth/2fa/setup", methods=["GET", "POST"])
@login_required
def two_factor_setup():
    """An admin's enrolment, before the admin area opens: the QR code and the secret as text,
    confirmed with a current code; then the recovery codes, shown this once. Once enrolled, the
    secret is never shown again."""
    account = _active_admin_or_404()
    next_page = _safe_next(request.args.get("next"))
    if account.has_second_factor:
        return redirect(url_for("auth.two_factor_verify", next=next_page))
    form = SecondFactorForm()
    passed, codes, status, headers = _try_code(account, form, totp.confirm_enrolment)
    if passed:
        return render_template(
            "auth/2fa_recovery_codes.html",
            codes=codes,
            next_page=next_page or url_for("admin.index"),
        )
    secret = totp.pending_secret(account)
    db.session.commit()
    qr_code = totp.qr_code_data_uri(totp.provisioning_uri(account, secret))
    return (
        render_template(
            "auth/2fa_setup.html", form=form, secret=secret, qr_code=qr_code, next_page=next_page
        ),
        status,
        headers,
    )


@bp.route("/auth/2fa/verify", methods=["GET", "POST"])
@login_required
def two_factor_verify():
    """An admin's code (or a recovery code): at sign-in, and again after the session was idle
    for ADMIN_IDLE_TIMEOUT_SECONDS. Wrong codes are throttled like passwords."""
    account = _active_admin_or_404()
    next_page = _safe_next(request.args.get("next"))
    if not account.has_second_factor:
        return redirect(url_for("auth.two_factor_setup", next=next_page))
    if two_factor.is_fresh(account):
        return _after_second_factor(account, next_page)
    form = SecondFactorForm()
    passed, kind, status, headers = _try_code(account, form, totp.verify)
    if passed:
        if kind == "recovery":
            left = totp.recovery_codes_left(account)
            flash(
                f"You used a recovery code: {left} left. If your phone is lost, ask "
                "the operator to reset your second factor and set it up again.",
                "info",
            )
        return _after_second_factor(account, next_page)
    # The session verified this account before: it was idle, not signed out.
    idle = session.get(two_factor.SECOND_FACTOR_FOR) == account.get_id()
    return (
        render_template("auth/2fa_verify.html", form=form, idle=idle, next_page=next_page),
        status,
        headers,
    )
