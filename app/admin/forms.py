"""Admin forms."""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from app.services.accounts import REASON_MAX
from app.services.money import AmountError, credits_to_nanos

# Digits only (str.isdigit would let other scripts' digits through); the range is the service's.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,9}")


def _strip(value):
    return value.strip() if value else value


class ReasonForm(FlaskForm):
    reason = TextAreaField(
        "Reason (recorded in the audit log)",
        validators=[DataRequired("Give a reason."), Length(max=REASON_MAX)],
        filters=[_strip],
    )


class MarginForm(ReasonForm):
    margin_bps = StringField("Margin in basis points (empty: the default)", filters=[_strip])

    def validate_margin_bps(self, field) -> None:
        if field.data and not WHOLE_NUMBER.fullmatch(field.data):
            raise ValidationError(
                "Enter a whole number of basis points (1000 = 10%), or nothing for the default."
            )

    @property
    def margin_bps_value(self) -> int | None:
        """The margin asked for; None for the default. Only after validation."""
        return int(self.margin_bps.data) if self.margin_bps.data else None


class SellPriceForm(ReasonForm):
    sell_price = StringField(
        "Sell price in credits per 1M tokens",
        validators=[DataRequired("Enter a price in credits per 1M tokens.")],
        filters=[_strip],
    )
    sell_nanos_per_mtok: int | None = None

    def validate_sell_price(self, field) -> None:
        try:
            self.sell_nanos_per_mtok = credits_to_nanos(field.data)
        except AmountError as exc:
            raise ValidationError(f"{exc}; enter credits per 1M tokens, like 2.75.") from None
