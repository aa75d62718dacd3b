"""The append-only ledger and the holds placed before requests are forwarded."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigIntPK, UTCDateTime, utcnow

LEDGER_KINDS = ("purchase", "usage", "refund", "grant", "adjustment", "dispute", "forfeit")
HOLD_STATUSES = ("open", "settled", "released", "expired")
# A request's bound on its cost, or credit on its way to a refund (which never expires by itself).
HOLD_PURPOSES = ("request", "refund")


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('purchase', 'usage', 'refund', 'grant', 'adjustment', 'dispute', 'forfeit')",
            name="kind",
        ),
        # The customer's activity and spend: entries of one kind in a time range, summed from the
        # index alone (it also serves every lookup by account).
        Index(
            "ix_ledger_entries_account_kind_created", "account_id", "kind", "created_at", "amount"
        ),
        # Every account's entries of a kind per day: the admin overview (migration 0013).
        Index("ix_ledger_entries_kind_created", "kind", "created_at", "amount"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    amount_nanocredits: Mapped[int] = mapped_column("amount", BigInteger, nullable=False)
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)  # for admins
    # What the customer's activity shows about a grant or an adjustment (an admin chooses it).
    public_note: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Hold(db.Model):
    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('open', 'settled', 'released', 'expired')", name="status"),
        CheckConstraint("purpose IN ('request', 'refund')", name="purpose"),
        CheckConstraint("purpose = 'refund' OR expires_at IS NOT NULL", name="request_expires"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    amount_nanocredits: Mapped[int] = mapped_column("amount", BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open", index=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    purpose: Mapped[str] = mapped_column(
        String(16), nullable=False, default="request", server_default="request"
    )
    # None for a refund's reservation: it is closed by the refund, never by the clock.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settled_amount_nanocredits: Mapped[int | None] = mapped_column("settled_amount", BigInteger)
