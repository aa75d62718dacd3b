"""Admins' second factor: TOTP codes (RFC 6238, an authenticator app) and single-use recovery codes.

The TOTP secret cannot be hashed (verifying a code needs the secret itself), so the database holds
it encrypted (Fernet) under a key derived from KEY_HASH_SECRET: a copy of the database alone does not
give the codes. It is shown only while enrolment is pending; once a code from it is confirmed it is
never shown again. Recovery codes are stored as HMACs under KEY_HASH_SECRET, like API keys.

A code is accepted once: the account keeps the time step of the last code accepted, and a code of
that step or an earlier one is refused, so a code seen over a shoulder or in a log is of no use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import time

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.models import Account, RecoveryCode
from app.models.types import utcnow
from app.services.accounts import end_sessions
from app.services.audit import record_audit

ISSUER = "OneKey"
STEP_SECONDS = 30
# A step either side of now is accepted, for a phone's clock a little off and a slow typist.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
# 32 symbols (no 0/o, 1/l), 10 of them: 50 bits a code, read and typed without ambiguity.
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 10
CODE_MAX = 32  # longer input is no code of ours


class TwoFactorError(ValueError):
    """A code that does not verify: wrong, already used, or not a code at all."""


def _fernet() -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"onekey totp secret").derive(
        current_app.config["KEY_HASH_SECRET"].encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def stored_secret(account: Account) -> str:
    """The account's TOTP secret (base32), decrypted.

    Raises TwoFactorError when the account has none, or when it was encrypted under another
    KEY_HASH_SECRET (the operator then resets the second factor).
    """
    if account.totp_secret is None:
        raise TwoFactorError("This account has no second factor.")
    try:
        return _fernet().decrypt(account.totp_secret.encode()).decode()
    except InvalidToken:
        raise TwoFactorError("The second factor cannot be read: reset it.") from None


def pending_secret(account: Account) -> str:
    """The secret to enrol with: created on first use and kept until confirmed, so that reloading
    the page does not void a code already scanned.

    Raises TwoFactorError when the account is already enrolled.
    """
    if account.has_second_factor:
        raise TwoFactorError("The second factor is already set up.")
    if account.totp_secret is not None:
        try:
            return stored_secret(account)
        except TwoFactorError:
            pass  # encrypted under an earlier KEY_HASH_SECRET: nothing was enrolled with it
    # Conditional, so two pages opened at once show one secret, not the last one written.
    db.session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            Account.totp_enabled_at.is_(None),
            Account.totp_secret.is_(None)
            if account.totp_secret is None
            else Account.totp_secret == account.totp_secret,
        )
        .values(totp_secret=_encrypt(pyotp.random_base32()))
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(account, ["totp_secret"])
    return stored_secret(account)


def provisioning_uri(account: Account, secret: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=account.email, issuer_name=ISSUER
    )


def qr_code_data_uri(uri: str) -> str:
    """The QR code of `uri` as an SVG data URI (the pages' CSP admits data: images): dark
    modules on white, whatever the page's colour scheme, so every camera reads it."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=4, light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _clean(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _matching_step(secret: str, code: str, now: float) -> int | None:
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now) // STEP_SECONDS
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(account: Account, step: int) -> bool:
    """Record `step` as used, unless it or a later one already was (one statement: two requests
    racing with one code cannot both win)."""
    claimed = db.session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            or_(Account.totp_last_step.is_(None), Account.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed:
        set_committed_value(account, "totp_last_step", step)
    return bool(claimed)


def _recovery_hash(code: str) -> str:
    secret = current_app.config["KEY_HASH_SECRET"].encode()
    return hmac.new(secret, f"recovery-code:{code}".encode(), hashlib.sha256).hexdigest()


def _new_recovery_codes(account: Account) -> list[str]:
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    db.session.add_all(
        RecoveryCode(account_id=account.id, code_hash=_recovery_hash(code)) for code in codes
    )
    db.session.flush()
    half = RECOVERY_CODE_LENGTH // 2
    return [f"{code[:half]}-{code[half:]}" for code in codes]


def confirm_enrolment(account: Account, code: str, *, now: float | None = None) -> list[str]:
    """Enrol the pending secret with a current code from it; returns the recovery codes, whose
    plaintext exists only in this answer.

    Raises TwoFactorError when the code is wrong or nothing is pending.
    """
    if account.has_second_factor or account.totp_secret is None:
        raise TwoFactorError("There is no second factor waiting to be confirmed.")
    code = _clean(code)
    now = time.time() if now is None else now
    step = _matching_step(stored_secret(account), code, now) if code.isdigit() else None
    if step is None:
        raise TwoFactorError("That code is not right. Enter the code your app shows now.")
    enabled = db.session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            Account.totp_enabled_at.is_(None),
            Account.totp_secret == account.totp_secret,
        )
        .values(totp_enabled_at=utcnow(), totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not enabled:
        raise TwoFactorError("There is no second factor waiting to be confirmed.")
    db.session.refresh(account, ["totp_enabled_at", "totp_last_step"])
    return _new_recovery_codes(account)


def verify(account: Account, code: str, *, now: float | None = None) -> str:
    """Check a code from the app (six digits) or a recovery code, and use it up; returns "totp"
    or "recovery".

    Raises TwoFactorError when the code is wrong, already used, or the account is not enrolled.
    """
    if not account.has_second_factor:
        raise TwoFactorError("This account has no second factor.")
    code = _clean(code)
    wrong = TwoFactorError("That code is not right, or it was used already.")
    if not code or len(code) > CODE_MAX:
        raise wrong
    if code.isdigit():
        step = _matching_step(stored_secret(account), code, time.time() if now is None else now)
        if step is None or not _claim_step(account, step):
            raise wrong
        return "totp"
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.account_id == account.id,
            RecoveryCode.code_hash == _recovery_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if not used:
        raise wrong
    return "recovery"


def recovery_codes_left(account: Account) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))
    )


def reset(account: Account, *, actor_id: int | None, reason: str) -> None:
    """Remove the account's second factor and recovery codes and end its sessions: its next
    sign-in enrols a new one (for an admin who lost the phone and the codes).

    Raises TwoFactorError when the account has no second factor, set up or pending.
    """
    if account.totp_secret is None:
        raise TwoFactorError(f"{account.email} has no second factor.")
    account.totp_secret = None
    account.totp_enabled_at = None
    account.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    end_sessions(account)
    record_audit(
        actor_id=actor_id,
        action="account.second_factor_reset",
        target_account_id=account.id,
        reason=reason,
    )
