"""Portal forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.services.accounts import PASSWORD_MAX
from app.services.keys import KEY_NAME_MAX
from app.services.refunds import NOTE_MAX


class ModelChecklistField(SelectMultipleField):
    """A list of checkboxes, one per model (keys.js adds a text filter over it)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


LIMIT_RESET_CHOICES = [
    SelectChoice("", "Never"),
    SelectChoice("daily", "Daily"),
    SelectChoice("weekly", "Weekly (Mondays)"),
    SelectChoice("monthly", "Monthly (the 1st)"),
]


class KeyFieldsForm(FlaskForm):
    """A key's editable fields, for creating one and for editing it."""

    name = StringField("Name", validators=[InputRequired(), Length(max=KEY_NAME_MAX)])
    limit = StringField(
        "Credit limit (optional)",
        validators=[Optional(), Length(max=24)],
        filters=[lambda value: value.strip() if value else value],
    )
    limit_reset = SelectField("Limit resets", choices=LIMIT_RESET_CHOICES, default="")
    allowed_models = ModelChecklistField("Allowed models (optional; none ticked means all)")
    expires_on = DateField("Expires on (optional)", validators=[Optional()])


class CreateKeyForm(KeyFieldsForm):
    pass


class EditKeyForm(KeyFieldsForm):
    """Rendered with the prefix `key<id>-`, so that several can be open on one page."""


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for buttons that post."""


class BuyCreditsForm(FlaskForm):
    amount = StringField(
        "Amount in US dollars",
        validators=[InputRequired(message="Enter an amount in dollars."), Length(max=24)],
    )


class ConfirmPaymentForm(FlaskForm):
    """Posted by the payment page once Stripe.js has saved the card."""

    payment_method = HiddenField(validators=[Length(max=255)])


class RefundRequestForm(FlaskForm):
    amount = StringField(
        "Amount to refund, in US dollars",
        validators=[InputRequired(message="Enter an amount in dollars."), Length(max=24)],
    )
    note = TextAreaField("Note for our team (optional)", validators=[Length(max=NOTE_MAX)])


class CloseAccountForm(FlaskForm):
    """The password and the confirmation are checked by the service, which names the field."""

    refund = StringField("Refund to ask for, in US dollars", validators=[Length(max=24)])
    note = TextAreaField("Note for our team (optional)", validators=[Length(max=NOTE_MAX)])
    password = PasswordField("Your password", validators=[Length(max=PASSWORD_MAX)])
    confirm = BooleanField(
        "I want to close my account: its API keys stop working now, and the credit not refunded "
        "is forfeited."
    )
