"""Periodic upkeep run by the cron scheduler."""

from __future__ import annotations

from app.extensions import db
from app.services.ledger import expire_holds


def expire_holds_job() -> int:
    """Release holds left open by a crashed process; a late settlement still debits."""
    released = expire_holds()
    db.session.commit()
    return released
