"""The usage rollups' fold, run by the cron scheduler every minute."""

from __future__ import annotations

import logging

from app.extensions import db
from app.services import usage_rollups

log = logging.getLogger("onekey.usage")
FOLD_INTERVAL_SECONDS = 60


def fold_usage_job() -> dict[str, int]:
    """Recount the recent folds (rebuilding a day that gained a late record), then fold every
    record older than the fold delay, a chunk per transaction. Returns what it did."""
    recheck = usage_rollups.recheck_recent_folds()
    db.session.commit()
    if recheck.late_records:
        log.warning(
            "usage rollups: %d records committed after their range was folded; %d days rebuilt",
            recheck.late_records,
            recheck.days_rebuilt,
        )
    folded = 0
    while True:
        count = usage_rollups.fold_next_chunk()
        db.session.commit()
        if not count:
            break
        folded += count
    return {
        "folded": folded,
        "late_records": recheck.late_records,
        "days_rebuilt": recheck.days_rebuilt,
    }
