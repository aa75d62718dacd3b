"""Accounts: sign-up under the Terms, passwords, password reset, suspension."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.audit import REASON_MAX, clean_reason, record_audit
from app.services.errors import AccountError
from app.services.terms import current_terms_version

EMAIL_MAX = 254
PASSWORD_MIN = 10
PASSWORD_MAX = 128
# A short list of the passwords most often tried first; long enough to stop the obvious ones.
COMMON_PASSWORDS = frozenset(
    [
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "1234567890",
        "0123456789",
        "12345678910",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "iloveyou123",
        "letmein123",
        "welcome123",
        "admin12345",
        "abc1234567",
        "abcdefghij",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "zaq12wsxcde",
        "monkey1234",
        "dragon1234",
        "football12",
        "baseball12",
        "sunshine12",
        "princess12",
        "trustno1234",
        "changeme123",
        "onekey1234",
        "onekeyonekey",
    ]
)
_DUMMY_HASH = generate_password_hash("timing-equaliser-not-a-password")


class EmailTaken(AccountError):
    """Sign-up for an address that has an account; `account_id` is that account's."""

    def __init__(self, account_id: int):
        super().__init__({"email": "An account with this email address already exists."})
        self.account_id = account_id


def normalise_email(raw: str) -> str:
    """The canonical form of an address; raises AccountError for a malformed one."""
    raw = (raw or "").strip()
    if not raw:
        raise AccountError({"email": "Enter your email address."})
    if len(raw) > EMAIL_MAX:
        raise AccountError({"email": f"An email address can be at most {EMAIL_MAX} characters."})
    try:
        checked = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        raise AccountError(
            {"email": "Enter a valid email address, like name@example.com."}
        ) from None
    return checked.normalized.lower()


def throttle_email(raw: str) -> str:
    """The address that sign-in attempts are counted under: the normalised one, so that
    `bob@ｅxample.com` (fullwidth e) counts as `bob@example.com`; a malformed address, which no
    account has, counts as typed, lower-cased."""
    try:
        return normalise_email(raw)
    except AccountError:
        return (raw or "").strip().lower()


def password_problem(password: str, email: str = "") -> str | None:
    """Why a password is too weak, or None."""
    if not password:
        return "Enter a password."
    if len(password) < PASSWORD_MIN:
        return f"Use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Use at most {PASSWORD_MAX} characters."
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        return "This password is too easy to guess; choose a less common one."
    local_part = email.split("@", 1)[0].lower()
    if email and (lowered == email.lower() or (len(local_part) >= 4 and local_part in lowered)):
        return "Your password must not contain your email address."
    return None


def account_by_email(email: str) -> Account | None:
    return db.session.scalar(select(Account).where(func.lower(Account.email) == email.lower()))


def signup_problems(
    *, email: str, password: str, age_confirmed: bool, terms_accepted: bool
) -> dict[str, str]:
    """Every reason these sign-up details cannot make an account, by field; {} when none. Whether
    the address already has an account is not one of them (see `register`)."""
    errors: dict[str, str] = {}
    try:
        email = normalise_email(email)
    except AccountError as exc:
        errors.update(exc.errors)
    problem = password_problem(password, email if "email" not in errors else "")
    if problem:
        errors["password"] = problem
    if not age_confirmed:
        errors["age_confirmed"] = "You must be at least 18 years old to use OneKey."
    if not terms_accepted:
        errors["terms_accepted"] = "You must accept the Terms of Service."
    return errors


def register(
    *, email: str, password: str, age_confirmed: bool, terms_accepted: bool, is_admin: bool = False
) -> Account:
    """Create an account for someone who attests to being 18+ and accepts the Terms.

    Raises AccountError with every problem found, or EmailTaken when the input is otherwise good
    but the address has an account; nothing is written then.
    """
    errors = signup_problems(
        email=email, password=password, age_confirmed=age_confirmed, terms_accepted=terms_accepted
    )
    if errors:
        raise AccountError(errors)
    email = normalise_email(email)
    # Only once the rest is good: a taken address with bad input gets the answer a free one gets.
    existing = account_by_email(email)
    if existing is not None:
        raise EmailTaken(existing.id)
    now = utcnow()
    account = Account(
        email=email,
        password_hash=generate_password_hash(password),
        is_admin=is_admin,
        status="active",
        terms_version=current_terms_version(),
        terms_accepted_at=now,
        age_attested_at=now,
    )
    db.session.add(account)
    db.session.flush()
    return account


def needs_terms_acceptance(account: Account) -> bool:
    """True when the account accepted other Terms than those in force: they changed since."""
    return account.terms_version != current_terms_version()


def accept_terms(account: Account, version: str) -> None:
    """Record that the account accepts the Terms of `version`, now.

    Raises AccountError (field "version") when `version` is not the one in force: the Terms
    changed after they were shown.
    """
    if version != current_terms_version():
        raise AccountError(
            {"version": "The Terms changed while you were reading them: read these and accept."}
        )
    account.terms_version = version
    account.terms_accepted_at = utcnow()
    db.session.flush()


def authenticate(email: str, password: str) -> Account | None:
    """The account if the password matches; the same work is done for unknown addresses."""
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    account = account_by_email(email) if email else None
    if account is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(account.password_hash, password or ""):
        return None
    return account


def change_password(account: Account, current_password: str, new_password: str) -> None:
    """Raises AccountError when the current password is wrong or the new one is weak."""
    if not check_password_hash(account.password_hash, current_password or ""):
        raise AccountError({"current_password": "Your current password is not correct."})
    set_password(account, new_password)


def set_password(account: Account, new_password: str) -> None:
    """Set a new password and end every other session. Raises AccountError for a weak one."""
    problem = password_problem(new_password, account.email)
    if problem:
        raise AccountError({"password": problem})
    account.password_hash = generate_password_hash(new_password)
    end_sessions(account)


def end_sessions(account: Account) -> None:
    """End every session of the account: the session version in their login ids is outdated."""
    account.session_version += 1
    db.session.flush()


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def password_reset_token(account: Account) -> str:
    # Binding the token to the current hash makes it single-use: a new password voids it.
    return _reset_serializer().dumps({"id": account.id, "pw": account.password_hash[-16:]})


def account_for_reset_token(token: str) -> Account | None:
    """The account a valid, unused, unexpired reset token names, else None."""
    try:
        data = _reset_serializer().loads(
            token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE_SECONDS"]
        )
    except (BadSignature, SignatureExpired):
        return None
    account = db.session.get(Account, data.get("id"))
    if account is None or account.password_hash[-16:] != data.get("pw"):
        return None
    return account


def clean_customer_message(message: str | None) -> str | None:
    """What an admin chose to tell the customer (emailed; shown on their pages), or None.

    Raises AccountError (field "customer_message") when it is too long.
    """
    message = (message or "").strip()
    if len(message) > REASON_MAX:
        raise AccountError(
            {"customer_message": f"The message can be at most {REASON_MAX} characters."}
        )
    return message or None


def suspend(
    account: Account, *, reason: str, actor_id: int | None, customer_message: str | None = None
) -> None:
    """Suspend an active account: its keys are refused and its sessions end. `customer_message`
    is the reason the customer is told (the audited `reason` is for admins).

    Raises AccountError without a reason or when the account is not active.
    """
    reason = clean_reason(reason)
    account.status_message = clean_customer_message(customer_message)
    if account.status != "active":
        raise AccountError({"status": f"The account is {account.status}, not active."})
    if actor_id is not None and actor_id == account.id:
        raise AccountError({"status": "You cannot suspend your own account."})
    _change_status(account, "suspended", reason, actor_id, "account.suspend")


def unsuspend(
    account: Account, *, reason: str, actor_id: int | None, customer_message: str | None = None
) -> None:
    """Lift a suspension.

    Raises AccountError without a reason, when not suspended, or when the actor is the account.
    """
    reason = clean_reason(reason)
    account.status_message = clean_customer_message(customer_message)
    if account.status != "suspended":
        raise AccountError({"status": f"The account is {account.status}, not suspended."})
    if actor_id is not None and actor_id == account.id:
        raise AccountError({"status": "You cannot lift your own suspension."})
    _change_status(account, "active", reason, actor_id, "account.unsuspend")


def _change_status(
    account: Account, status: str, reason: str, actor_id: int | None, action: str
) -> None:
    previous = account.status
    account.status = status
    account.status_reason = reason
    account.status_changed_at = utcnow()
    end_sessions(account)
    record_audit(
        actor_id=actor_id,
        action=action,
        target_account_id=account.id,
        reason=reason,
        details={"from": previous, "to": status},
    )


def clear_flag(account: Account, *, reason: str, actor_id: int) -> None:
    """An admin has looked at what flagged the account (a negative balance, a payment) and clears
    it; the flag is kept in the audit entry.

    Raises AccountError without a reason or when the account is not flagged.
    """
    reason = clean_reason(reason)
    if account.flagged_reason is None:
        raise AccountError({"flag": f"{account.email} is not flagged."})
    record_audit(
        actor_id=actor_id,
        action="account.clear_flag",
        target_account_id=account.id,
        reason=reason,
        details={"flag": account.flagged_reason},
    )
    account.flagged_reason = None
    db.session.flush()
