"""API keys: `ok-` + 43 url-safe characters; only an HMAC under KEY_HASH_SECRET is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey, CatalogModel
from app.models.types import utcnow
from app.services import refunds

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


def create_key(
    account: Account,
    *,
    name: str,
    limit_nanocredits: int | None = None,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored or shown again.

    Raises KeyRequestError when the account cannot create keys or a field is invalid.
    """
    if account.status != "active":
        raise KeyRequestError(f"Your account is {account.status}: it cannot create API keys.")
    if refunds.closing_request(account.id) is not None:
        raise KeyRequestError("Your account is being closed: it cannot create API keys.")
    name = name.strip()
    if not name:
        raise KeyRequestError("Give the key a name.")
    if len(name) > KEY_NAME_MAX:
        raise KeyRequestError(f"The name can be at most {KEY_NAME_MAX} characters.")
    if limit_nanocredits is not None and limit_nanocredits <= 0:
        raise KeyRequestError("The credit limit must be a positive amount.")
    if expires_at is not None and expires_at <= utcnow():
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
    plaintext = generate_key()
    key = ApiKey(
        account_id=account.id,
        name=name,
        key_hash=hash_key(plaintext),
        last4=plaintext[-4:],
        limit_nanocredits=limit_nanocredits,
        allowed_models=allowed_models,
        expires_at=expires_at,
    )
    db.session.add(key)
    db.session.flush()
    return key, plaintext


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
