"""API keys. Only an HMAC of the key is stored; `last4` is kept for display.

A limit that resets (daily, weekly, monthly) counts this period's spend: usage − the usage at the
period's start (services/key_periods.py). A paused key is refused until it is resumed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow
from app.services.key_periods import period_usage


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "limit_reset IS NULL OR limit_reset IN ('daily', 'weekly', 'monthly')",
            name="limit_reset",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    # Per-key spending cap in nanocredits; usage (this period's, when it resets) and open holds
    # count against it.
    limit_nanocredits: Mapped[int | None] = mapped_column(BigInteger)
    # None, "daily", "weekly" or "monthly" (midnight UTC; weeks start on Monday).
    limit_reset: Mapped[str | None] = mapped_column(String(8))
    # Lifetime spend; only settlement moves it.
    usage_nanocredits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    held_nanocredits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The usage when the stored period began; settlement rolls both over (key_periods.py).
    period_usage_base_nanocredits: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    period_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None means every enabled model; otherwise a list of model ids.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    rate_limit_rpm: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account = relationship("Account", backref="api_keys")

    @property
    def masked(self) -> str:
        return f"ok-…{self.last4}"

    def status_at(self, moment: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= moment:
            return "expired"
        if self.paused_at is not None:
            return "paused"
        return "active"

    def period_usage_at(self, moment: datetime) -> int:
        """Spend in the current limit period (lifetime spend when the limit does not reset)."""
        return period_usage(
            limit_reset=self.limit_reset,
            usage=self.usage_nanocredits,
            base=self.period_usage_base_nanocredits,
            period_started_at=self.period_started_at,
            now=moment,
        )

    def limit_remaining_at(self, moment: datetime) -> int | None:
        """What the key may still reserve under its limit (never below 0); None without one."""
        if self.limit_nanocredits is None:
            return None
        spent = self.period_usage_at(moment) + self.held_nanocredits
        return max(self.limit_nanocredits - spent, 0)
