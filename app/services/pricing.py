"""Prices in integer nanocredits per million tokens, and the cost of a request (DESIGN.md, "Money")."""

from __future__ import annotations

from collections.abc import Mapping

from app.services.money import decimal_to_nanos, div_half_up

TOKENS_PER_PRICE_UNIT = 1_000_000
BPS_DENOMINATOR = 10_000

# Price classes by name, where no provider is in view (a table of every provider's models).
CLASS_NAMES = {
    "input": "Input",
    "cache_read": "Cached input",
    "cache_write_5m": "Cache write",
    "cache_write_1h": "Cache write, long",
    "output": "Output",
}
# The lifetimes of each provider's two cache-write classes: Anthropic's 5-minute and 1-hour
# caches, OpenAI's 30-minute and 12-hour ones.
CACHE_WRITE_LIFETIMES = {
    "anthropic": {"cache_write_5m": "5 min", "cache_write_1h": "1 h"},
    "openai": {"cache_write_5m": "30 min", "cache_write_1h": "12 h"},
}


def class_label(token_class: str, provider: str | None = None) -> str:
    """A price class as the pages name it: a cache write by the provider's lifetime for it."""
    lifetime = CACHE_WRITE_LIFETIMES.get(provider or "", {}).get(token_class)
    return f"Cache write, {lifetime}" if lifetime else CLASS_NAMES[token_class]


def usd_per_mtok_to_nanos(text: str) -> int:
    """'1.25' (US dollars per 1M tokens) -> 1_250_000_000 nanocredits per 1M tokens ($1 = 1 credit).

    Raises AmountError for anything but a plain decimal that fits, ValueError when negative.
    """
    nanos = decimal_to_nanos(text)
    if nanos < 0:
        raise ValueError(f"price {text!r} is negative")
    return nanos


def sell_price(list_price_nanos_per_mtok: int, margin_bps: int) -> int:
    """Provider price × (1 + margin), rounded half-up to whole nanocredits per million tokens."""
    if margin_bps < 0:
        raise ValueError("margin must not be negative")
    return div_half_up(list_price_nanos_per_mtok * (BPS_DENOMINATOR + margin_bps), BPS_DENOMINATOR)


def request_cost(prices: Mapping[str, int], tokens: Mapping[str, int]) -> int:
    """Sum over classes of tokens × price / 10^6, rounded half-up once for the whole request.

    Raises KeyError naming a token class that has tokens but no price.
    """
    total = 0
    for token_class, count in tokens.items():
        if count < 0:
            raise ValueError(f"negative token count for {token_class}")
        if count == 0:
            continue
        if token_class not in prices:
            raise KeyError(token_class)
        total += count * prices[token_class]
    return div_half_up(total, TOKENS_PER_PRICE_UNIT)


def cost_bound(tokens: int, price_per_mtok: int) -> int:
    """tokens × price / 10^6 rounded up, in integers: a hold must never be short."""
    return -(-tokens * price_per_mtok // TOKENS_PER_PRICE_UNIT)


# What "unbounded" output means when a model's output is free.
UNBOUNDED_TOKENS = 2**31


def affordable_output_tokens(available: int, price_per_mtok: int, choices: int) -> int:
    """The most output tokens (per choice) that `available` nanocredits pay for, up to
    UNBOUNDED_TOKENS (more than any model writes)."""
    if price_per_mtok <= 0:
        return UNBOUNDED_TOKENS
    affordable = (available * TOKENS_PER_PRICE_UNIT) // (price_per_mtok * choices)
    return max(0, min(affordable, UNBOUNDED_TOKENS))


def tier_for_prompt(tier_thresholds: list[int], prompt_tokens: int) -> int:
    """The tier a request bills at: the highest threshold its prompt exceeds (0 is the base tier)."""
    reached = [t for t in tier_thresholds if t == 0 or prompt_tokens > t]
    return max(reached, default=0)
