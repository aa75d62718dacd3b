"""Ledger movements at chosen moments, made by the real services, and the activity table read back
from a page, for the activity, receipt and dashboard tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from itertools import count

from sqlalchemy import update

from app.extensions import db
from app.models import LedgerEntry
from app.models.types import utcnow
from app.services import holds
from app.services.ledger import place_hold

CREDIT = 1_000_000_000
_requests = count(1)


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def date_entry(idempotency_key: str, when: datetime) -> None:
    """Move a ledger entry (just posted by a service, which stamps it now) to `when`."""
    db.session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.idempotency_key == idempotency_key)
        .values(created_at=when)
    )


def spend_at(account_id: int, cost: int, when: datetime) -> None:
    """One metered request settled at `when` by the proxy's own settlement: a usage record and one
    usage debit of `cost`. The account must be active and able to hold the cost."""
    hold = place_hold(
        account_id=account_id,
        amount_nanocredits=max(cost, 1),
        expires_at=utcnow() + timedelta(hours=1),
    )
    settled = holds.settle(
        hold.id,
        cost,
        usage={
            "account_id": account_id,
            "hold_id": hold.id,
            "request_id": f"req-{next(_requests)}",
            "provider": "openai",
            "model_id": "gpt-4o-mini",
            "route": "chat.completions",
            "status": "ok",
            "input_tokens": 10,
            "output_tokens": 5,
        },
        now=when,
        connection=db.session.connection(),
    )
    assert settled
    db.session.expire_all()


class _TableRows(HTMLParser):
    """The cells' text of every <tr> carrying data-kind: [(kind, [cell, ...]), ...]."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cells: list[str] | None = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-kind" in attrs:
            self.rows.append((attrs["data-kind"], []))
            self._cells = self.rows[-1][1]
        elif tag == "td" and self._cells is not None:
            self._text = []

    def handle_endtag(self, tag):
        if tag == "td" and self._text is not None:
            self._cells.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "tr":
            self._cells = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def table_rows(html: str) -> list[tuple[str, list[str]]]:
    parser = _TableRows()
    parser.feed(html)
    return parser.rows
