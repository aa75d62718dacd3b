"""Daily rollups of usage records, so the usage page never sums a million rows.

The rollups hold exactly the usage records with id <= the watermark (`UsageRollupState`); the
usage page adds the raw records above it, so its figures are exact and current. The fold job
(app/services/usage_rollups.py) is the only writer.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigIntPK, UTCDateTime, utcnow

# `api_key_id` of the rollup of records made without a key (the operator's own tools): a unique
# constraint does not match NULLs, so the upsert that folds records needs a value.
NO_KEY = 0


class UsageDailyRollup(db.Model):
    """One account's usage on one UTC day, for one key, model and status: counts and sums."""

    __tablename__ = "usage_daily_rollups"
    __table_args__ = (
        UniqueConstraint(
            "account_id",
            "day",
            "api_key_id",
            "provider",
            "model_id",
            "status",
            name="uq_usage_daily_rollups_group",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # No foreign keys: derived data, rebuilt from usage_records; NO_KEY is not a key.
    account_id: Mapped[int] = mapped_column(Integer, nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    api_key_id: Mapped[int] = mapped_column(Integer, nullable=False)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False)
    input_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cache_write_5m_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    output_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cost_nanocredits: Mapped[int] = mapped_column("cost", BigInteger, nullable=False)
    # Σ the records' list_cost; `list_unpriced` counts the records whose list cost is not known.
    list_cost_nanocredits: Mapped[int] = mapped_column(
        "list_cost", BigInteger, nullable=False, server_default="0"
    )
    list_unpriced: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class UsageRollupState(db.Model):
    """The watermark: every usage record with id <= folded_through_id is in the rollups (one row)."""

    __tablename__ = "usage_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folded_through_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class UsageRollupFold(db.Model):
    """One fold: the usage records with first_id < id <= last_id, and how many there were.

    Kept for a while so a later run can count the range again: a record that committed after
    its range was folded (a settlement slower than the fold delay) makes the count differ, and
    the days it may belong to are then rebuilt from the raw records.
    """

    __tablename__ = "usage_rollup_folds"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    first_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # exclusive
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # inclusive
    records: Mapped[int] = mapped_column(BigInteger, nullable=False)
    folded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
