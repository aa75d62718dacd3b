"""API keys: `ok-` + 43 url-safe characters; only an HMAC under KEY_HASH_SECRET is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from flask import current_app
from sqlalchemy import case, func, select

from app.extensions import db
from app.models import Account, ApiKey, CatalogModel, Hold
from app.models.types import utcnow
from app.services import refunds
from app.services.key_periods import LIMIT_RESETS, RESET_PARAMS, period_params, period_start

KEY_PREFIX = "ok-"
KEY_NAME_MAX = 100


class KeyRequestError(ValueError):
    """A key request that cannot be honoured; the message says why."""


def hash_key(plaintext: str) -> str:
    secret = current_app.config["KEY_HASH_SECRET"].encode()
    return hmac.new(secret, plaintext.encode(), hashlib.sha256).hexdigest()


def generate_key() -> str:
    # 32 random bytes encode to exactly 43 url-safe characters.
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_account(account: Account, action: str) -> None:
    """Raises KeyRequestError when the account may not `action` (e.g. "create API keys")."""
    if account.status != "active":
        raise KeyRequestError(f"Your account is {account.status}: it cannot {action}.")
    if refunds.closing_request(account.id) is not None:
        raise KeyRequestError(f"Your account is being closed: it cannot {action}.")


def _clean_fields(
    *,
    name: str,
    limit_nanocredits: int | None,
    limit_reset: str | None,
    allowed_models: list[str] | None,
    expires_at: datetime | None,
    current_expiry: datetime | None = None,
) -> dict:
    """A key's editable fields, checked and normalised (models sorted, an empty list = all).
    An expiry must be in the future unless it is `current_expiry` (the key's, unchanged).

    Raises KeyRequestError naming the first field that is wrong.
    """
    name = name.strip()
    if not name:
        raise KeyRequestError("Give the key a name.")
    if len(name) > KEY_NAME_MAX:
        raise KeyRequestError(f"The name can be at most {KEY_NAME_MAX} characters.")
    if limit_nanocredits is not None and limit_nanocredits <= 0:
        raise KeyRequestError("The credit limit must be a positive amount.")
    if limit_reset is not None and limit_reset not in LIMIT_RESETS:
        raise KeyRequestError("The limit resets daily, weekly or monthly, or never.")
    if limit_reset is not None and limit_nanocredits is None:
        raise KeyRequestError("Set a credit limit for it to reset.")
    if expires_at is not None and expires_at != current_expiry and expires_at <= utcnow():
        raise KeyRequestError("The expiry must be in the future.")
    if allowed_models is not None:
        allowed_models = sorted(set(allowed_models))
        known = set(
            db.session.scalars(
                select(CatalogModel.model_id).where(CatalogModel.model_id.in_(allowed_models))
            )
        )
        unknown = [m for m in allowed_models if m not in known]
        if unknown:
            raise KeyRequestError(f"Unknown model: {', '.join(unknown)}.")
        if not allowed_models:
            allowed_models = None
    return {
        "name": name,
        "limit_nanocredits": limit_nanocredits,
        "limit_reset": limit_reset,
        "allowed_models": allowed_models,
        "expires_at": expires_at,
    }


def create_key(
    account: Account,
    *,
    name: str,
    limit_nanocredits: int | None = None,
    limit_reset: str | None = None,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored or shown again.

    Raises KeyRequestError when the account cannot create keys or a field is invalid.
    """
    _check_account(account, "create API keys")
    fields = _clean_fields(
        name=name,
        limit_nanocredits=limit_nanocredits,
        limit_reset=limit_reset,
        allowed_models=allowed_models,
        expires_at=expires_at,
    )
    plaintext = generate_key()
    key = ApiKey(
        account_id=account.id,
        key_hash=hash_key(plaintext),
        last4=plaintext[-4:],
        period_started_at=period_start(limit_reset, utcnow()) if limit_reset else None,
        **fields,
    )
    db.session.add(key)
    db.session.flush()
    return key, plaintext


def update_key(
    key: ApiKey,
    *,
    name: str,
    limit_nanocredits: int | None,
    limit_reset: str | None,
    allowed_models: list[str] | None,
    expires_at: datetime | None,
) -> None:
    """Change what a key may do; the very next request sees it (the hold statement reads the row).

    A limit that starts resetting, or resets on another period, counts what the key spent since
    the current period began (its settled holds), as if it had always reset so. Raises
    KeyRequestError (nothing changed) for a revoked key, an account that cannot change keys or an
    invalid field.
    """
    _check_account(key.account, "change API keys")
    if key.revoked_at is not None:
        raise KeyRequestError("This key is revoked: it cannot be changed.")
    fields = _clean_fields(
        name=name,
        limit_nanocredits=limit_nanocredits,
        limit_reset=limit_reset,
        allowed_models=allowed_models,
        expires_at=expires_at,
        current_expiry=key.expires_at,
    )
    if limit_reset != key.limit_reset:
        _restart_period(key, limit_reset)
    for column, value in fields.items():
        setattr(key, column, value)
    db.session.flush()


def _restart_period(key: ApiKey, limit_reset: str | None) -> None:
    """Point the key's period at the current one of `limit_reset`, its base at the usage before
    what was settled in it. The key row is locked first, so no settlement lands between reading
    the usage and the holds (a settlement waiting on the lock then finds the period current)."""
    db.session.refresh(key, with_for_update=True)
    if limit_reset is None:
        key.period_started_at = None
        key.period_usage_base_nanocredits = 0
        return
    started = period_start(limit_reset, utcnow())
    spent = db.session.scalar(
        select(func.coalesce(func.sum(Hold.settled_amount_nanocredits), 0)).where(
            Hold.api_key_id == key.id, Hold.status == "settled", Hold.closed_at >= started
        )
    )
    key.period_started_at = started
    key.period_usage_base_nanocredits = key.usage_nanocredits - int(spent)


def set_paused(key: ApiKey, paused: bool) -> bool:
    """Pause a key (refused with 403 from the next request on) or resume it; False when it was
    already so. Raises KeyRequestError for a revoked key or an account that cannot change keys."""
    _check_account(key.account, "change API keys")
    if key.revoked_at is not None:
        raise KeyRequestError("This key is revoked: it cannot be paused or resumed.")
    if (key.paused_at is not None) == paused:
        return False
    key.paused_at = utcnow() if paused else None
    db.session.flush()
    return True


def key_of_account(account_id: int, key_id: int) -> ApiKey | None:
    """The key if it belongs to the account, else None (never a hint that it exists)."""
    return db.session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    )


def revoke_key(key: ApiKey) -> bool:
    """Revoke at once; False if it was already revoked."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    db.session.flush()
    return True


def settled_by_period(key_id: int, now: datetime) -> dict[str, int]:
    """What the key's holds settled since the current UTC day, week and month began:
    {"daily": …, "weekly": …, "monthly": …} in nanocredits (one query over its recent holds)."""
    bounds = {reset: period_params(now)[param] for reset, param in RESET_PARAMS.items()}
    sums = [
        func.coalesce(
            func.sum(case((Hold.closed_at >= start, Hold.settled_amount_nanocredits), else_=0)), 0
        )
        for start in bounds.values()
    ]
    row = db.session.execute(
        select(*sums).where(
            Hold.api_key_id == key_id,
            Hold.status == "settled",
            Hold.closed_at >= min(bounds.values()),
        )
    ).one()
    # PostgreSQL sums BIGINTs as NUMERIC.
    return {reset: int(total) for reset, total in zip(bounds, row, strict=True)}
