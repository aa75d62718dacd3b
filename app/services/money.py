"""Credit amounts: integers of nanocredits, parsed from and written as plain decimal strings."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

NANOS_PER_CREDIT = 1_000_000_000
CREDIT_DECIMALS = 9
# Amounts live in BIGINT columns: the largest a single amount may be.
MAX_NANOCREDITS = 2**63 - 1


class AmountError(ValueError):
    """An amount that is not a plain decimal with at most the allowed decimals."""


def parse_decimal(text: str, *, max_decimals: int) -> Decimal:
    """Parse a plain decimal string (digits, optional sign and point; no exponent).

    Raises AmountError for anything else or for more than `max_decimals` decimals.
    """
    cleaned = str(text).strip()
    if not cleaned or any(ch not in "0123456789.-+" for ch in cleaned):
        raise AmountError(f"{text!r} is not a plain decimal number")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise AmountError(f"{text!r} is not a plain decimal number") from exc
    if not value.is_finite():
        raise AmountError(f"{text!r} is not a finite number")
    if -value.as_tuple().exponent > max_decimals:
        raise AmountError(f"{text!r} has more than {max_decimals} decimals")
    return value


def decimal_to_nanos(text: str) -> int:
    """A plain decimal of whole units -> billionths, exactly: '12.5' -> 12_500_000_000.

    Raises AmountError (see parse_decimal) and for an amount too large for a BIGINT column.
    """
    value = parse_decimal(text, max_decimals=CREDIT_DECIMALS)
    exact = Context(prec=len(value.as_tuple().digits) + CREDIT_DECIMALS)
    nanos = int(value.scaleb(CREDIT_DECIMALS, context=exact))
    if abs(nanos) > MAX_NANOCREDITS:
        raise AmountError(f"{text!r} is too large")
    return nanos


def credits_to_nanos(text: str) -> int:
    """Credits as text -> nanocredits. Raises AmountError."""
    return decimal_to_nanos(text)


def nanos_to_credits(nanocredits: int) -> str:
    """Exact plain decimal string of an amount in credits: 12_500_000_000 -> '12.5'."""
    sign = "-" if nanocredits < 0 else ""
    whole, frac = divmod(abs(nanocredits), NANOS_PER_CREDIT)
    frac_text = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"


def display_credits(nanocredits: int, *, min_decimals: int = 2) -> str:
    """For pages: at least `min_decimals` decimals, never rounded, thousands separated."""
    text = nanos_to_credits(nanocredits)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    frac = frac.ljust(min_decimals, "0")
    return f"{sign}{int(whole):,}.{frac}" if frac else f"{sign}{int(whole):,}"


def div_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding halves away from zero (half-up on magnitudes)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return magnitude if numerator >= 0 else -magnitude
