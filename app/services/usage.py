"""Usage records: one per proxied request, written with the settlement of its hold."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import UsageRecord
from app.services import ledger


class _HoldClosed(Exception):
    pass


def record_usage(values: dict) -> bool:
    """Write the usage record and settle its hold at the record's cost, in one transaction.

    `values` are the UsageRecord's columns as plain values (so a job can carry them). Returns
    False, writing nothing, when the hold was already settled or released: settling twice is
    impossible whoever tries it.
    """
    hold_id = values["hold_id"]
    if db.session.scalar(select(UsageRecord.id).where(UsageRecord.hold_id == hold_id)):
        return False
    try:
        with db.session.begin_nested():
            record = UsageRecord(**values)
            db.session.add(record)
            db.session.flush()
            if not ledger.settle_hold(
                hold_id, values["cost_nanocredits"], reference_id=f"usage:{record.id}"
            ):
                raise _HoldClosed
    except _HoldClosed:
        return False
    return True
