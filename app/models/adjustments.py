"""Credit an admin grants or debits by hand on an account page, beside its ledger entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class CreditAdjustment(db.Model):
    """One adjustment: its ledger entry (a `grant` or a negative `adjustment`), why it was made
    (for admins; in the audit log too) and the note the customer may or may not see."""

    __tablename__ = "credit_adjustments"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("NOT note_visible OR note IS NOT NULL", name="visible_note_given"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    ledger_entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_entries.id"), nullable=False, unique=True
    )
    # Signed, as in the ledger: positive for a grant, negative for a debit.
    amount_nanocredits: Mapped[int] = mapped_column("amount", BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)  # for admins (audited)
    note: Mapped[str | None] = mapped_column(Text)
    # Whether the customer may see `note`; otherwise it is for admins only.
    note_visible: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    actor_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    ledger_entry = relationship("LedgerEntry")
    actor = relationship("Account", foreign_keys=[actor_id])

    @property
    def customer_note(self) -> str | None:
        """What the customer may read about the adjustment, if anything."""
        return self.note if self.note_visible else None
