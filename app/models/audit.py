"""The admin audit log: who did what to which account, and why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import BigIntPK, UTCDateTime, utcnow


class AuditLogEntry(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (
        # The log page's filters, each read newest first from its index (migration 0011).
        Index("ix_audit_log_actor_created", "actor_id", "created_at"),
        Index("ix_audit_log_action_created", "action", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # None when the system acted (a dispute, a scheduled job).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )

    actor = relationship("Account", foreign_keys=[actor_id])
    target_account = relationship("Account", foreign_keys=[target_account_id])
