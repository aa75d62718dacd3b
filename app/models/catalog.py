"""The model catalogue and its prices, in integer nanocredits per million tokens."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

PROVIDERS = ("openai", "anthropic", "google", "xai")
PRICE_CLASSES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
# A provider's lifecycle of a model: sold while active or deprecated (until `retires_on`), never
# once retired.
MODEL_STATUSES = ("active", "deprecated", "retired")


class CatalogModel(db.Model):
    __tablename__ = "catalog_models"
    __table_args__ = (
        CheckConstraint("provider IN ('openai', 'anthropic', 'google', 'xai')", name="provider"),
        CheckConstraint("status IN ('active', 'deprecated', 'retired')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    model_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    context_length: Mapped[int] = mapped_column(Integer, nullable=False)
    max_output_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Per-model margin override in basis points; None means the global MARGIN_BPS.
    margin_bps: Mapped[int | None] = mapped_column(Integer)
    price_source: Mapped[str | None] = mapped_column(Text)
    price_date: Mapped[str | None] = mapped_column(String(10))
    # The provider's lifecycle, from the bundled file (migration 0010): a deprecated model is sold
    # until `retires_on`, a retired one never (sync disables it; its rows stay, usage names it).
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    retires_on: Mapped[date | None] = mapped_column(Date)
    replacement_model_id: Mapped[str | None] = mapped_column(String(128))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # A new random value with every change to the model or its prices, set by database triggers
    # (migration 0003) whoever makes the change: the proxy caches models per process, and its hold
    # statement refuses a copy of another version.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="1")

    prices = relationship(
        "ModelPrice",
        back_populates="model",
        cascade="all, delete-orphan",
        order_by="(ModelPrice.tier_threshold_tokens, ModelPrice.token_class)",
    )


class ModelPrice(db.Model):
    """One billed token class of one model at one tier (threshold 0 is the base tier)."""

    __tablename__ = "model_prices"
    __table_args__ = (
        UniqueConstraint("model_pk", "tier_threshold_tokens", "token_class", name="uq_model_price"),
        CheckConstraint(
            "token_class IN ('input', 'cache_read', 'cache_write_5m', 'cache_write_1h', 'output')",
            name="token_class",
        ),
        CheckConstraint("list_price >= 0 AND sell_price >= 0", name="prices_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("catalog_models.id"), nullable=False)
    # The tier applies when the prompt has more than this many tokens; 0 is the base tier.
    tier_threshold_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    token_class: Mapped[str] = mapped_column(String(16), nullable=False)
    list_price_nanos_per_mtok: Mapped[int] = mapped_column("list_price", BigInteger, nullable=False)
    sell_price_nanos_per_mtok: Mapped[int] = mapped_column("sell_price", BigInteger, nullable=False)
    # Set when an admin edited this price; catalogue sync then leaves it alone.
    admin_edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the list price was read, and when (migration 0010).
    source: Mapped[str | None] = mapped_column(Text)
    as_of: Mapped[date | None] = mapped_column(Date)
    # Set when a sync found the provider's list price risen above the sell price an admin had set,
    # and raised the sell price to list × margin: what it was before, shown on the admin page until
    # an admin sets the price, resets it or acknowledges the change.
    raised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raised_from_sell_nanos_per_mtok: Mapped[int | None] = mapped_column(
        "raised_from_sell", BigInteger
    )
    raised_from_list_nanos_per_mtok: Mapped[int | None] = mapped_column(
        "raised_from_list", BigInteger
    )

    model = relationship("CatalogModel", back_populates="prices")
