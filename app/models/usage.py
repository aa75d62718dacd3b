"""One usage record per proxied request: metadata only, never content."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigIntPK, UTCDateTime, utcnow

USAGE_STATUSES = ("ok", "upstream_error", "partial", "estimated")


class UsageRecord(db.Model):
    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint(
            "status IN ('ok', 'upstream_error', 'partial', 'estimated')", name="status"
        ),
        # The usage page's log, newest first, by account or by key, with keyset paging
        # (migration 0006; they replace the single-column indexes on account_id and api_key_id).
        Index("ix_usage_records_account_created", "account_id", "created_at", "id"),
        Index("ix_usage_records_key_created", "api_key_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"), unique=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    streamed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    input_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cache_write_5m_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cache_write_1h_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_nanocredits: Mapped[int] = mapped_column("cost", BigInteger, nullable=False, default=0)
    # What the provider charges for it at its list prices of the moment (the margin's other
    # side), by the cost's rules. None: not known (a record older than migration 0014 whose
    # model's prices at its tier were gone by then).
    list_cost_nanocredits: Mapped[int | None] = mapped_column("list_cost", BigInteger)
    # The sell prices (nanocredits per 1M tokens, by class) the cost was computed with.
    prices_applied: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # How an "estimated" record's counts were made (bytes sent and delivered, images, rules);
    # None when the provider's own counts were billed.
    estimate_basis: Mapped[dict | None] = mapped_column(JSON)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    time_to_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, index=True
    )
