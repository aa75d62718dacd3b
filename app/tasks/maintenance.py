"""Periodic upkeep run by the cron scheduler."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError

from app import heartbeat
from app.extensions import db, get_redis
from app.models.types import utcnow
from app.services.catalog import retire_due_models
from app.services.ledger import expire_holds, open_request_holds_placed_before, release_as_expired

log = logging.getLogger("onekey.maintenance")
ORPHAN_SWEEP_INTERVAL_SECONDS = 30
# A deprecated model stops being sold within this long of its retirement date's start (UTC).
RETIREMENT_CHECK_INTERVAL_SECONDS = 600


def expire_holds_job() -> int:
    """Release holds left open by a crashed process; a late settlement still debits."""
    released = expire_holds()
    db.session.commit()
    return released


def release_orphaned_holds_job() -> int:
    """Release the open holds of web processes that stopped beating (killed, or lost with their
    machine), long before their hard expiry; a process that beats is never touched. Returns how
    many holds were released."""
    ttl = current_app.config["HEARTBEAT_TTL_SECONDS"]
    # A hold younger than a TTL may be a new process's whose first beat is not visible yet.
    candidates = open_request_holds_placed_before(utcnow() - timedelta(seconds=ttl))
    by_token: dict[str, list[int]] = {}
    for hold_id, request_id in candidates:
        token = heartbeat.token_of(request_id)
        if token is not None:
            by_token.setdefault(token, []).append(hold_id)
    try:
        dead = heartbeat.dead_tokens(get_redis(), set(by_token), ttl=ttl)
    except RedisError as exc:
        db.session.rollback()
        log.warning("orphaned holds not swept: %s", type(exc).__name__)
        return 0
    released = release_as_expired(sorted(hold_id for token in dead for hold_id in by_token[token]))
    db.session.commit()
    return released


def retire_due_models_job() -> list[str]:
    """Retire the deprecated models whose retirement date (UTC) has come: disabled, audited, and
    refused by every gateway process from its next request. Returns their ids."""
    retired = retire_due_models(utcnow().date())
    db.session.commit()
    if retired:
        log.info("retired on their retirement date: %s", ", ".join(retired))
    return retired
