"""Requests about an account that an admin decides and a `lifecycle` job carries out (Terms §4, §10):
refunds of unused credit, closure by the customer, termination by OneKey."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

REQUEST_KINDS = ("refund", "closure", "termination")
REQUEST_STATES = ("requested", "approved", "denied", "processing", "done", "failed")
# A request in one of these still reserves credit or waits for a job: one per account at a time.
OPEN_STATES = ("requested", "approved", "processing")
PART_STATES = ("pending", "done", "failed")
_OPEN_SQL = "state IN ('requested', 'approved', 'processing')"


class AccountRequest(db.Model):
    """A refund, closure or termination, from request to done.

    requested → approved / denied → processing → done / failed; a failed one can be approved again.
    `hold_id` is the reservation of the credit on its way to a refund, placed when the request is
    made. `refunded_cents` grows with each refund part recorded; `forfeited_nanocredits` is what a
    closure or termination wrote off.
    """

    __tablename__ = "account_requests"
    __table_args__ = (
        CheckConstraint("kind IN ('refund', 'closure', 'termination')", name="kind"),
        CheckConstraint(
            "state IN ('requested', 'approved', 'denied', 'processing', 'done', 'failed')",
            name="state",
        ),
        CheckConstraint("requested_cents >= 0", name="requested_not_negative"),
        Index(
            "uq_account_requests_one_open",
            "account_id",
            unique=True,
            postgresql_where=text(_OPEN_SQL),
            sqlite_where=text(_OPEN_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="requested", index=True)
    # A refund of one purchase only; None refunds from every refundable purchase, newest first.
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    requested_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    approved_cents: Mapped[int | None] = mapped_column(Integer)
    refunded_cents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    forfeited_nanocredits: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)  # the customer's
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)  # audited, for admins
    customer_message: Mapped[str | None] = mapped_column(Text)  # what the customer is told
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))
    error: Mapped[str | None] = mapped_column(Text)
    # Each run of the job; a run holds a lease, so two workers never carry out one request at once.
    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waiting_for: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account = relationship("Account", foreign_keys=[account_id])
    decider = relationship("Account", foreign_keys=[decided_by])
    requester = relationship("Account", foreign_keys=[requested_by])
    parts = relationship("RefundPart", order_by="RefundPart.id", back_populates="request")

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def amount_cents(self) -> int:
        """What is (to be) refunded: the approved amount once decided, else what was asked."""
        return self.requested_cents if self.approved_cents is None else self.approved_cents

    @property
    def display_state(self) -> str:
        """The state as the customer reads it."""
        if self.state != "done":
            return self.state
        return {"refund": "refunded", "closure": "closed", "termination": "terminated"}[self.kind]


class RefundPart(db.Model):
    """One Stripe refund of one purchase, stored (pending) before Stripe is called.

    Its idempotency key is `refund-<request>-<purchase>` (with `-<attempt>` after a refusal, since
    Stripe replays the answer it gave a key), and its metadata names the request, the purchase and
    the part, so a run that died between Stripe's answer and the commit finds it again. A part whose
    outcome is unknown (Stripe unreachable) stays pending, and is looked up again, never re-made.
    """

    __tablename__ = "refund_parts"
    __table_args__ = (
        UniqueConstraint(
            "request_id", "purchase_id", "attempt", name="uq_refund_parts_request_purchase"
        ),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint("state IN ('pending', 'done', 'failed')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("account_requests.id"), nullable=False, index=True
    )
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), nullable=False)
    # 1 for the first try of this purchase in this request; one more after Stripe refused one.
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    amount_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    request = relationship("AccountRequest", back_populates="parts")
    purchase = relationship("Purchase")

    @property
    def idempotency_key(self) -> str:
        key = f"refund-{self.request_id}-{self.purchase_id}"
        return key if self.attempt == 1 else f"{key}-{self.attempt}"
