"""Customer and admin accounts. The account row caches `balance` and `held` (DESIGN.md, "Money")."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

ACCOUNT_STATUSES = ("active", "suspended", "closed", "terminated")


class Account(UserMixin, db.Model):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'closed', 'terminated')", name="status"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("low_balance_threshold > 0", name="low_balance_threshold_positive"),
        # The alert check reads only accounts with a threshold; `balance` stays out of every index,
        # so a settlement's update of it remains a heap-only (HOT) update on PostgreSQL.
        Index(
            "ix_accounts_low_balance_watch",
            "id",
            postgresql_where=text("low_balance_threshold IS NOT NULL"),
            sqlite_where=text("low_balance_threshold IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)  # for admins (audited)
    # What the customer is told about a suspension or termination, when an admin shares a reason.
    status_message: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    balance_nanocredits: Mapped[int] = mapped_column(
        "balance", BigInteger, nullable=False, default=0
    )
    held_nanocredits: Mapped[int] = mapped_column("held", BigInteger, nullable=False, default=0)
    # Bumped on suspension, closure, termination, password change and logout: ends the sessions.
    session_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    terms_version: Mapped[str] = mapped_column(String(16), nullable=False)
    terms_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    age_attested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Set when a balance went below zero or a payment needs a look; cleared by an admin.
    flagged_reason: Mapped[str | None] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The customer's low-balance email: sent once when the balance falls below the threshold
    # (None: no alert), re-armed (sent_at back to None) once it is at or above it again.
    low_balance_threshold_nanocredits: Mapped[int | None] = mapped_column(
        "low_balance_threshold", BigInteger
    )
    low_balance_alert_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # An admin's second factor (app/services/totp.py): the TOTP secret, encrypted; it is pending
    # until the admin confirms a code from it, which sets `totp_enabled_at`.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The time step of the last code accepted: a code of that step or an earlier one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    @property
    def is_active_account(self) -> bool:
        return self.status == "active"

    @property
    def is_suspended(self) -> bool:
        return self.status == "suspended"

    @property
    def is_ended(self) -> bool:
        """Closed by the customer or terminated by OneKey: it can no longer sign in."""
        return self.status in ("closed", "terminated")

    @property
    def has_second_factor(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def available_nanocredits(self) -> int:
        return self.balance_nanocredits - self.held_nanocredits

    def get_id(self) -> str:
        # The session version is part of the login id, so bumping it logs out every session.
        return f"{self.id}:{self.session_version}"


class RecoveryCode(db.Model):
    """One of an admin's single-use recovery codes; only an HMAC of the code is stored."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
