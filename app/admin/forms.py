"""Admin forms."""

from __future__ import annotations

import re
import secrets

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from app.services.adjustments import NOTE_MAX as ADJUSTMENT_NOTE_MAX
from app.services.audit import REASON_MAX
from app.services.money import AmountError, credits_to_nanos
from app.services.refunds import NOTE_MAX, RefundError, parse_refund_cents

# Digits only (str.isdigit would let other scripts' digits through); the range is the service's.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,9}")


def _strip(value):
    return value.strip() if value else value


def _reason_field(**kwargs) -> TextAreaField:
    return TextAreaField(
        "Reason (recorded in the audit log)",
        validators=[DataRequired("Give a reason."), Length(max=REASON_MAX)],
        filters=[_strip],
        **kwargs,
    )


def _customer_message_field(label: str, max_length: int, **kwargs) -> TextAreaField:
    return TextAreaField(label, validators=[Length(max=max_length)], filters=[_strip], **kwargs)


class DollarsField(StringField):
    """Dollars and whole cents as typed ('12.50', '$20'; empty is 0); `cents` once validated."""

    cents: int | None = None

    def pre_validate(self, form) -> None:
        try:
            self.cents = parse_refund_cents(self.data)
        except RefundError as exc:
            raise ValidationError(str(exc)) from None


class ReasonForm(FlaskForm):
    reason = _reason_field()


class StatusChangeForm(ReasonForm):
    """Suspending or lifting a suspension: the audited reason, and what the customer is told."""

    customer_message = _customer_message_field(
        "Message to the customer (optional)", REASON_MAX, id="status-customer-message"
    )


class TerminateForm(FlaskForm):
    reason = _reason_field(id="terminate-reason")
    customer_message = _customer_message_field(
        "Message to the customer (optional; in the email that tells them)",
        NOTE_MAX,
        id="terminate-customer-message",
    )
    refund = DollarsField(
        "Discretionary refund in dollars", default="0", filters=[_strip], id="terminate-refund"
    )


class AdminRefundForm(FlaskForm):
    amount = DollarsField(
        "Amount in dollars",
        validators=[DataRequired("Enter an amount in dollars, like 12.50.")],
        filters=[_strip],
        id="refund-amount",
    )
    reason = _reason_field(id="refund-reason")

    def validate_amount(self, field) -> None:
        if field.cents == 0:
            raise ValidationError("Enter an amount of at least $0.01.")


class ApproveForm(FlaskForm):
    amount = DollarsField("Refund in dollars", filters=[_strip], id="approve-amount")
    reason = _reason_field(id="approve-reason")


class DenyForm(FlaskForm):
    reason = _reason_field(id="deny-reason")
    customer_message = _customer_message_field(
        "Message to the customer (optional; emailed to them)",
        NOTE_MAX,
        id="deny-customer-message",
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


class CreditAdjustmentForm(FlaskForm):
    """Granting or debiting credit by hand. `form_key` is made when the form is first shown and
    sent back with it, so the same form posts once however often it is sent."""

    direction = RadioField(
        "Adjustment",
        choices=[SelectChoice("grant", "Grant credit"), SelectChoice("debit", "Debit credit")],
        default="grant",
        validators=[DataRequired("Choose to grant or to debit credit.")],
        id="adjust-direction",
    )
    amount = StringField(
        "Amount in credits",
        validators=[DataRequired("Enter an amount in credits, like 5 or 2.50.")],
        filters=[_strip],
        id="adjust-amount",
    )
    reason = _reason_field(id="adjust-reason")
    note = TextAreaField(
        "Note (optional)",
        validators=[
            Length(
                max=ADJUSTMENT_NOTE_MAX,
                message=f"The note can be at most {ADJUSTMENT_NOTE_MAX} characters.",
            )
        ],
        filters=[_strip],
        id="adjust-note",
    )
    note_visible = BooleanField("The customer may see the note", id="adjust-note-visible")
    form_key = HiddenField(id="adjust-form-key")
    amount_nanocredits: int | None = None

    @classmethod
    def blank(cls) -> CreditAdjustmentForm:
        """A new, empty form with its own key (a posted form keeps the key it was sent with)."""
        form = cls(formdata=None)
        form.form_key.data = secrets.token_urlsafe(24)
        return form

    def validate_amount(self, field) -> None:
        try:
            self.amount_nanocredits = credits_to_nanos(field.data)
        except AmountError as exc:
            raise ValidationError(f"{exc}; enter credits, like 5 or 2.50.") from None
        if self.amount_nanocredits <= 0:
            raise ValidationError("Enter an amount above 0; choose Debit to take credit away.")
