"""The admin audit log: who did what to which account, and why.

Every admin action is audited by the service that carries it out, in the same transaction as the
change it records (a view never writes an audit row), so a change and its audit row are committed
or rolled back together. The system's own acts on accounts (a dispute's suspension, a closure's
end) are recorded too, with no actor. The log pages read it through `audit_query`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Account, AuditLogEntry
from app.services.errors import AccountError

REASON_MAX = 500
# The actions that change an account's status: its status history.
STATUS_ACTIONS = (
    "account.suspend",
    "account.unsuspend",
    "account.terminate",
    "account.closed",
    "account.terminated",
    "closure.request",
)


def record_audit(
    *,
    actor_id: int | None,
    action: str,
    target_account_id: int | None,
    reason: str | None = None,
    details: dict | None = None,
) -> AuditLogEntry:
    """Add one entry to the log (flushed, not committed: it commits with the change it records)."""
    entry = AuditLogEntry(
        actor_id=actor_id,
        action=action,
        target_account_id=target_account_id,
        reason=reason,
        details=details,
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def clean_reason(reason: str) -> str:
    """The reason an admin gives for an audited action, stripped.

    Raises AccountError (field "reason") when it is empty or longer than REASON_MAX.
    """
    reason = (reason or "").strip()
    if not reason:
        raise AccountError({"reason": "Give a reason; it is recorded in the audit log."})
    if len(reason) > REASON_MAX:
        raise AccountError({"reason": f"The reason can be at most {REASON_MAX} characters."})
    return reason


# The "admin" filter's value for entries no one signed in made (the system's).
SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class AuditFilters:
    """What the log is narrowed to; None leaves a filter out. `until` is a day included."""

    actor_id: int | None = None
    system_only: bool = False  # the entries with no actor
    action: str | None = None
    account_id: int | None = None
    since: date | None = None
    until: date | None = None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def audit_query(filters: AuditFilters) -> Select:
    """The entries matching `filters`, newest first (each filter is served by an index)."""
    query = select(AuditLogEntry).options(
        selectinload(AuditLogEntry.actor), selectinload(AuditLogEntry.target_account)
    )
    if filters.system_only:
        query = query.where(AuditLogEntry.actor_id.is_(None))
    elif filters.actor_id is not None:
        query = query.where(AuditLogEntry.actor_id == filters.actor_id)
    if filters.action:
        query = query.where(AuditLogEntry.action == filters.action)
    if filters.account_id is not None:
        query = query.where(AuditLogEntry.target_account_id == filters.account_id)
    if filters.since is not None:
        query = query.where(AuditLogEntry.created_at >= _day_start(filters.since))
    if filters.until is not None:
        query = query.where(
            AuditLogEntry.created_at < _day_start(filters.until + timedelta(days=1))
        )
    return query.order_by(AuditLogEntry.created_at.desc(), AuditLogEntry.id.desc())


def recorded_actions() -> list[str]:
    """Every action the log holds, for the action filter."""
    return list(
        db.session.scalars(select(AuditLogEntry.action).distinct().order_by(AuditLogEntry.action))
    )


def actors() -> list[tuple[int, str]]:
    """(id, email) of every account that acted, for the admin filter: admins, and customers who
    asked for something audited (a closure, a refund)."""
    acted = select(AuditLogEntry.actor_id).where(AuditLogEntry.actor_id.is_not(None)).distinct()
    return [
        (account_id, email)
        for account_id, email in db.session.execute(
            select(Account.id, Account.email).where(Account.id.in_(acted)).order_by(Account.email)
        )
    ]


def status_history(account_id: int) -> list[AuditLogEntry]:
    """The account's changes of status (and the requests that began one), oldest first."""
    return list(
        db.session.scalars(
            select(AuditLogEntry)
            .where(
                AuditLogEntry.target_account_id == account_id,
                AuditLogEntry.action.in_(STATUS_ACTIONS),
            )
            .order_by(AuditLogEntry.created_at, AuditLogEntry.id)
        )
    )
