"""Exact integer arithmetic of prices, request costs and credit amounts (DESIGN.md, "Money").

Every expected value here is computed independently of the code under test, with Decimal and
ROUND_HALF_UP, so a rounding mistake in the app cannot hide behind the same mistake in the test.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.models import CatalogModel
from app.services.catalog import margin_for
from app.services.money import (
    AmountError,
    credits_to_nanos,
    display_credits,
    div_half_up,
    nanos_to_credits,
)
from app.services.pricing import (
    request_cost,
    sell_price,
    tier_for_prompt,
    usd_per_mtok_to_nanos,
)

BIGINT_MAX = 2**63 - 1
NANOS = 10**9
PROPERTY = settings(deadline=None, max_examples=200)

nanos_in_bigint = st.integers(min_value=-BIGINT_MAX, max_value=BIGINT_MAX)
# Realistic list prices: $0 to $10,000 per million tokens, in nanodollars.
list_prices = st.integers(min_value=0, max_value=10_000 * NANOS)
margins = st.integers(min_value=0, max_value=100_000)
TOKEN_CLASSES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")


def half_up(numerator: int, denominator: int) -> int:
    """The reference rounding: Decimal ROUND_HALF_UP (halves away from zero), at ample precision."""
    with localcontext(prec=100):
        return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), ROUND_HALF_UP))


# --- usd_per_mtok_to_nanos ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("0.000000001", 1),
        ("0.005", 5_000_000),
        ("0.075", 75_000_000),
        ("0.125", 125_000_000),
        ("0.275", 275_000_000),
        ("1.25", 1_250_000_000),
        ("10.00", 10_000_000_000),
        ("18.75", 18_750_000_000),
        ("75", 75_000_000_000),
        ("0.100000000", 100_000_000),
        (" 2.5 ", 2_500_000_000),
        ("123456789.123456789", 123_456_789_123_456_789),
    ],
)
def test_usd_price_converts_exactly_to_nanos(text, nanos):
    assert usd_per_mtok_to_nanos(text) == nanos
    assert type(usd_per_mtok_to_nanos(text)) is int


@given(st.integers(min_value=0, max_value=BIGINT_MAX))
@PROPERTY
def test_usd_price_conversion_is_exact_for_every_nanodollar(nanos):
    text = nanos_to_credits(nanos)
    assert usd_per_mtok_to_nanos(text) == nanos
    # The same value written with all nine decimals converts to the same integer.
    whole, frac = divmod(nanos, NANOS)
    assert usd_per_mtok_to_nanos(f"{whole}.{frac:09d}") == nanos


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "1.25e0",
        "1.25E-1",
        "0.0000000001",
        "1.0000000005",
        "2.1234567891",
        "-1",
        "-0.01",
        "-0.000000001",
        "abc",
        "",
        "   ",
        "NaN",
        "inf",
        "Infinity",
        "1,25",
        "$1.25",
        "1.2.3",
        "0x10",
        "1_000",
        "١",
        "--1",
    ],
)
def test_usd_price_rejects_exponents_excess_decimals_negatives_and_junk(text):
    with pytest.raises(ValueError):
        usd_per_mtok_to_nanos(text)


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=NANOS - 1))
@settings(deadline=None, max_examples=300)
def test_usd_price_is_exact_or_refused_at_any_size(whole, frac):
    """A list price is never silently rounded, and never larger than a BIGINT column holds.

    Fails today: usd_per_mtok_to_nanos (pricing.py) still multiplies in Decimal's default 28-digit
    context and has no upper bound, e.g. '99999999999999999999.999999999' -> 10**29.
    """
    text = f"{whole}.{frac:09d}"
    try:
        nanos = usd_per_mtok_to_nanos(text)
    except ValueError:
        return
    assert nanos == whole * NANOS + frac
    assert nanos <= BIGINT_MAX


# --- sell_price ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("list_price", "margin_bps", "expected"),
    [
        # list × 11000 ends in 5000: exactly half a nanocredit, rounded up (not to even).
        (5, 1000, 6),  # 5.5
        (15, 1000, 17),  # 16.5 (banker's rounding would give 16)
        (35, 1000, 39),  # 38.5 (banker's rounding would give 38)
        (45, 1000, 50),  # 49.5
        # Just either side of the half.
        (4, 1000, 4),  # 4.4
        (6, 1000, 7),  # 6.6
        # list × 11000 ends in 0000: no rounding at all.
        (10, 1000, 11),
        (1_250_000_000, 1000, 1_375_000_000),
        (75_000_000, 1000, 82_500_000),
        (275_000_000, 1000, 302_500_000),
        (18_750_000_000, 1000, 20_625_000_000),
        # Other margins with exact halves: 2 × 1.25 = 2.5, 1 × 1.5 = 1.5, 3 × 1.0005 = 3.0015.
        (2, 2500, 3),
        (1, 5000, 2),
        (3, 5, 3),
        (1000, 5, 1001),  # 1000.5
        (999, 5, 999),  # 999.4995
    ],
)
def test_sell_price_rounds_half_up_at_exact_half_nanocredits(list_price, margin_bps, expected):
    assert sell_price(list_price, margin_bps) == expected


@given(list_prices, margins)
@PROPERTY
def test_sell_price_is_list_times_one_plus_margin_rounded_half_up(list_price, margin_bps):
    assert sell_price(list_price, margin_bps) == half_up(list_price * (10_000 + margin_bps), 10_000)


@given(list_prices)
@PROPERTY
def test_sell_price_with_zero_margin_is_the_list_price(list_price):
    assert sell_price(list_price, 0) == list_price


def test_sell_price_refuses_a_negative_margin():
    with pytest.raises(ValueError):
        sell_price(1_000, -1)


def test_per_model_margin_overrides_the_default_even_when_zero():
    assert margin_for(CatalogModel(model_id="m", margin_bps=None), 1000) == 1000
    assert margin_for(CatalogModel(model_id="m", margin_bps=2500), 1000) == 2500
    # 0 is an override (sell at cost), not "unset".
    assert margin_for(CatalogModel(model_id="m", margin_bps=0), 1000) == 0


# --- request_cost --------------------------------------------------------------------------------


def test_request_cost_rounds_once_per_request_not_per_class():
    prices = {"input": 400_000, "output": 400_000}
    # Each class costs 0.4 nanocredit: per-class rounding would bill 0; the request costs 0.8 -> 1.
    assert request_cost(prices, {"input": 1, "output": 1}) == 1
    three = {"input": 300_000, "cache_read": 300_000, "output": 300_000}
    assert request_cost(three, {"input": 1, "cache_read": 1, "output": 1}) == 1
    # Each class costs exactly 0.5: per-class half-up would bill 2; the request costs 1.0 -> 1.
    halves = {"input": 500_000, "output": 500_000}
    assert request_cost(halves, {"input": 1, "output": 1}) == 1


@pytest.mark.parametrize(
    ("price", "tokens", "expected"),
    [
        (500_000, 1, 1),  # 0.5 -> 1
        (499_999, 1, 0),  # 0.499999 -> 0
        (500_001, 1, 1),
        (1_500_000, 1, 2),  # 1.5 -> 2
        (2_500_000, 1, 3),  # 2.5 -> 3 (banker's rounding would give 2)
        (1, 500_000, 1),  # half a nanocredit from the token count side
        (1, 499_999, 0),
        (1_375_000_000, 1_000, 1_375_000),  # 1,000 gpt-5 input tokens at the sell price
        (11_000_000_000, 128_000, 1_408_000_000),
    ],
)
def test_request_cost_rounds_half_up_at_exactly_half_a_nanocredit(price, tokens, expected):
    assert request_cost({"output": price}, {"output": tokens}) == expected


@given(
    st.dictionaries(
        st.sampled_from(TOKEN_CLASSES),
        st.tuples(
            st.integers(min_value=0, max_value=100 * NANOS),
            st.integers(min_value=0, max_value=2_000_000),
        ),
    )
)
@PROPERTY
def test_request_cost_is_the_half_up_rounded_exact_sum(classes):
    prices = {c: price for c, (price, _) in classes.items()}
    tokens = {c: count for c, (_, count) in classes.items()}
    expected = half_up(sum(tokens[c] * prices[c] for c in classes), 1_000_000)
    assert request_cost(prices, tokens) == expected


def test_request_cost_of_nothing_is_zero():
    assert request_cost({"input": 1_000}, {}) == 0
    assert request_cost({"input": 1_000}, {"input": 0, "output": 0}) == 0


def test_request_cost_names_an_unpriced_token_class():
    # Zero tokens of an unpriced class is fine; any tokens of it cannot be billed.
    assert request_cost({"input": 1_000_000}, {"input": 2, "cache_write_1h": 0}) == 2
    with pytest.raises(KeyError) as caught:
        request_cost({"input": 1_000_000}, {"input": 2, "cache_write_1h": 1})
    assert caught.value.args == ("cache_write_1h",)


def test_request_cost_refuses_negative_token_counts():
    with pytest.raises(ValueError):
        request_cost({"input": 1_000_000}, {"input": -1})


# --- tier_for_prompt -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thresholds", "prompt", "tier"),
    [
        ([0, 200_000], 0, 0),
        ([0, 200_000], 199_999, 0),
        ([0, 200_000], 200_000, 0),  # exactly at the threshold: still the base tier
        ([0, 200_000], 200_001, 200_000),  # one token more: the whole request is long-context
        ([0, 200_000], 1_000_000, 200_000),
        ([200_000, 0], 200_001, 200_000),  # order does not matter
        ([0, 128_000, 200_000], 128_000, 0),
        ([0, 128_000, 200_000], 128_001, 128_000),
        ([0, 128_000, 200_000], 200_000, 128_000),
        ([0, 128_000, 200_000], 200_001, 200_000),
        ([0], 10**9, 0),
        ([], 10**9, 0),
    ],
)
def test_tier_for_prompt_boundaries(thresholds, prompt, tier):
    assert tier_for_prompt(thresholds, prompt) == tier


@given(st.integers(min_value=1, max_value=2_000_000), st.integers(min_value=0, max_value=4_000_000))
@PROPERTY
def test_tier_is_reached_only_by_a_prompt_longer_than_its_threshold(threshold, prompt):
    expected = threshold if prompt > threshold else 0
    assert tier_for_prompt([0, threshold], prompt) == expected


# --- credit amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos", "canonical"),
    [
        ("0", 0, "0"),
        ("0.000000001", 1, "0.000000001"),
        ("0.1", 100_000_000, "0.1"),
        ("12.5", 12_500_000_000, "12.5"),
        ("12.500000000", 12_500_000_000, "12.5"),
        ("1.000000001", 1_000_000_001, "1.000000001"),
        ("+3", 3_000_000_000, "3"),
        (".5", 500_000_000, "0.5"),
        ("-0.000000001", -1, "-0.000000001"),
        ("-7.25", -7_250_000_000, "-7.25"),
        ("9223372036.854775807", BIGINT_MAX, "9223372036.854775807"),
    ],
)
def test_credit_amounts_convert_exactly(text, nanos, canonical):
    assert credits_to_nanos(text) == nanos
    assert nanos_to_credits(nanos) == canonical


@given(nanos_in_bigint)
@PROPERTY
def test_nanos_to_credits_round_trips_exactly(nanos):
    text = nanos_to_credits(nanos)
    assert "e" not in text.lower()
    assert credits_to_nanos(text) == nanos
    assert Decimal(text) == Decimal(nanos) / NANOS


@given(
    st.decimals(
        min_value=Decimal(-BIGINT_MAX) / NANOS,
        max_value=Decimal(BIGINT_MAX) / NANOS,
        places=9,
        allow_nan=False,
        allow_infinity=False,
    )
)
@PROPERTY
def test_credits_to_nanos_round_trips_exactly(amount):
    text = format(amount, "f")
    nanos = credits_to_nanos(text)
    assert nanos == int(amount * NANOS)
    assert Decimal(nanos_to_credits(nanos)) == amount


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=NANOS - 1))
@settings(deadline=None, max_examples=300)
def test_credits_to_nanos_is_exact_or_refuses_at_any_size(whole, frac):
    """An amount is never silently rounded: it converts exactly or raises AmountError.

    Regression: `value * 10**9` in Decimal's default 28-digit context rounded amounts of 29 or more
    significant digits (e.g. '99999999999999999999.999999999' -> 10**29).
    """
    text = f"{whole}.{frac:09d}"
    try:
        nanos = credits_to_nanos(text)
    except AmountError:
        return
    assert nanos == whole * NANOS + frac


@pytest.mark.parametrize(
    "text",
    ["1e3", "1E3", "1.0000000001", "0.0000000001", "abc", "", " ", "1,000", "NaN", "inf", "1..0"],
)
def test_credits_to_nanos_rejects_non_plain_decimals(text):
    with pytest.raises(AmountError):
        credits_to_nanos(text)


@pytest.mark.parametrize(
    ("nanos", "kwargs", "shown"),
    [
        (0, {}, "0.00"),
        (1, {}, "0.000000001"),
        (NANOS, {}, "1.00"),
        (1_500_000_000, {}, "1.50"),
        (12_345_678_901, {}, "12.345678901"),
        (1_234_567_500_000_000, {}, "1,234,567.50"),
        (1_000_000_000_000_000, {}, "1,000,000.00"),
        (-1, {}, "-0.000000001"),
        (-1_234_500_000_000, {}, "-1,234.50"),
        (NANOS, {"min_decimals": 4}, "1.0000"),
        (1_234_567_890, {"min_decimals": 4}, "1.23456789"),
        (1_500_000_000, {"min_decimals": 0}, "1.5"),
    ],
)
def test_display_credits_shows_every_digit_with_separators(nanos, kwargs, shown):
    assert display_credits(nanos, **kwargs) == shown


def test_display_credits_with_no_minimum_decimals_has_no_dangling_point():
    """Regression: display_credits(10**9, min_decimals=0) once returned '1.'."""
    assert display_credits(NANOS, min_decimals=0) == "1"
    assert display_credits(1_000 * NANOS, min_decimals=0) == "1,000"


@given(nanos_in_bigint)
@PROPERTY
def test_display_credits_is_never_rounded(nanos):
    shown = display_credits(nanos)
    assert Decimal(shown.replace(",", "")) == Decimal(nanos) / NANOS
    assert len(shown.rpartition(".")[2]) >= 2


@given(
    st.integers(min_value=-(10**24), max_value=10**24), st.integers(min_value=1, max_value=10**12)
)
@PROPERTY
def test_div_half_up_rounds_halves_away_from_zero(numerator, denominator):
    assert div_half_up(numerator, denominator) == half_up(numerator, denominator)


def test_div_half_up_refuses_a_non_positive_denominator():
    with pytest.raises(ValueError):
        div_half_up(1, 0)
    with pytest.raises(ValueError):
        div_half_up(1, -1)
