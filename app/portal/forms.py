"""Portal forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    PasswordField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from app.services.accounts import PASSWORD_MAX
from app.services.keys import KEY_NAME_MAX
from app.services.refunds import NOTE_MAX


class CreateKeyForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=KEY_NAME_MAX)])
    limit = StringField(
        "Credit limit (optional)",
        validators=[Optional(), Length(max=24)],
        filters=[lambda value: value.strip() if value else value],
    )
    allowed_models = SelectMultipleField("Allowed models (optional; none selected means all)")
    expires_on = DateField("Expires on (optional)", validators=[Optional()])


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
