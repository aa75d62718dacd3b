"""Usage records: one per proxied request, written with the settlement of its hold."""

from __future__ import annotations

from app.extensions import db
from app.models import UsageRecord
from app.services import ledger


def record_usage(values: dict) -> bool:
    """Settle the hold at the record's cost and write the usage record, in one transaction.

    `values` are the UsageRecord's columns as plain values (so a job can carry them). Returns
    False, writing nothing, when the hold was already settled or released: settling twice is
    impossible whoever tries it.
    """
    hold_id = values["hold_id"]
    if not ledger.settle_hold(hold_id, values["cost_nanocredits"], reference_id=f"hold:{hold_id}"):
        return False
    db.session.add(UsageRecord(**values))
    db.session.flush()
    return True
