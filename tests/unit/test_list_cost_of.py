"""metering.list_cost_of: the provider's charge at its list prices, by the cost's own rules."""

from __future__ import annotations

from app.proxy.metering import PricedModel, Usage, cost_of, list_cost_of

SELL = {0: {"input": 2_200, "output": 8_800}, 1_000: {"input": 4_400, "output": 17_600}}
LIST = {0: {"input": 2_000, "output": 8_000}, 1_000: {"input": 4_000, "output": 16_000}}


def model(list_tiers=LIST) -> PricedModel:
    return PricedModel("anthropic", "m", "M", 200_000, 1_000, SELL, list_tiers)


def test_list_cost_is_at_the_tier_the_prompt_reached_rounded_half_up_once():
    base = Usage(input=999, output=1_001, prompt_tokens=999)
    assert list_cost_of(model(), base) == (999 * 2_000 + 1_001 * 8_000 + 500_000) // 10**6
    long = Usage(input=1_001, output=3, prompt_tokens=1_001)
    assert list_cost_of(model(), long) == (1_001 * 4_000 + 3 * 16_000 + 500_000) // 10**6
    assert cost_of(model(), long)[1]["tier"] == 1_000


def test_a_class_without_a_list_price_is_at_the_list_input_price():
    usage = Usage(input=10, cache_write_5m=700, cache_read=300, output=0, prompt_tokens=1_010)
    assert list_cost_of(model(), usage) == (1_010 * 4_000 + 500_000) // 10**6


def test_unknown_list_prices_are_none_not_zero():
    usage = Usage(input=10, output=10, prompt_tokens=10)
    assert list_cost_of(model({}), usage) is None
    assert list_cost_of(model({0: LIST[0]}), Usage(input=2_000, prompt_tokens=2_000)) is None
