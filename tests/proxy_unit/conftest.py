"""Unit tests of the chat translators: no database, no network, no app fixtures."""

from __future__ import annotations

import pytest

from app.proxy.metering import PricedModel

# Sell prices in nanocredits per million tokens ($3.30 in, $16.50 out, with cache classes).
TIERS = {
    0: {
        "input": 3_300_000_000,
        "cache_read": 330_000_000,
        "cache_write_5m": 4_125_000_000,
        "cache_write_1h": 6_600_000_000,
        "output": 16_500_000_000,
    }
}


@pytest.fixture
def claude() -> PricedModel:
    return PricedModel(
        provider="anthropic",
        model_id="claude-sonnet-4-5",
        name="Claude Sonnet 4.5",
        context_length=200_000,
        max_output_tokens=64_000,
        tiers=TIERS,
    )


@pytest.fixture
def gemini() -> PricedModel:
    return PricedModel(
        provider="google",
        model_id="gemini-2.5-flash",
        name="Gemini 2.5 Flash",
        context_length=1_048_576,
        max_output_tokens=65_536,
        tiers=TIERS,
    )
