"""Refused requests per key: what the gateway turned away before calling a provider, so that a
customer whose application fails can see why (the records: app/proxy/refusals.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import abort, render_template, request
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy import select

from app.extensions import db, get_redis
from app.models import ApiKey
from app.models.types import utcnow
from app.portal import bp
from app.proxy.refusals import COUNT_DAYS, REFUSALS_KEPT, refusals_of
from app.web_helpers import is_fragment_request

log = logging.getLogger("onekey.portal")

# What the customer can do about each refusal, by its code.
HINTS = {
    "invalid_request": "Fix the named parameter; your application received the full message.",
    "invalid_api_key": "The key is revoked or expired: create another.",
    "insufficient_credits": "Buy credits, or ask for fewer output tokens.",
    "key_limit_reached": "The key reached its credit limit: raise it or use another key.",
    "account_suspended": "The account cannot use the API; contact support.",
    "model_not_allowed": "The key's allowed models do not include this one.",
    "model_not_found": "Check the model id against the pricing page.",
    "rate_limited": "Too many requests: slow down and retry after the Retry-After seconds.",
}


def _account_keys() -> list[ApiKey]:
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.account_id == current_user.id)
            .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
        )
    )


def _rows(entries: list[dict]) -> list[dict]:
    rows = []
    for entry in entries:
        at = entry.get("at")
        when = datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else None
        rows.append({**entry, "when": when, "hint": HINTS.get(entry.get("code"))})
    return rows


@bp.get("/keys/refusals")
def refusals():
    """The chosen key's refusals (`?key=<id>`, else the account's first key): the page, or only
    its results for htmx. Another account's key is a 404, like a missing one."""
    keys = _account_keys()
    key_id = request.args.get("key", type=int)
    key = next((k for k in keys if k.id == key_id), None) if key_id is not None else None
    if key_id is not None and key is None:
        abort(404)
    key = key or (keys[0] if keys else None)
    context = {
        "keys": keys,
        "key": key,
        "now": utcnow(),
        "kept": REFUSALS_KEPT,
        "days": COUNT_DAYS,
        "refused": None,
        "rows": [],
        "unavailable": False,
    }
    status = 200
    if key is not None:
        try:
            refused = refusals_of(get_redis(), key.id)
        except RedisError as exc:
            log.warning("refusals of key %s not read: %s", key.id, type(exc).__name__)
            context["unavailable"] = True
            status = 503
        else:
            context.update(refused=refused, rows=_rows(refused.recent))
    if is_fragment_request():
        return render_template("portal/partials/refusals.html", **context), status
    return render_template("portal/refusals.html", **context), status
