"""API keys. Only an HMAC of the key is stored; `last4` is kept for display."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    # Per-key spending cap in nanocredits; usage and open holds count against it.
    limit_nanocredits: Mapped[int | None] = mapped_column(BigInteger)
    usage_nanocredits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    held_nanocredits: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
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
        return "active"
