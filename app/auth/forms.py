"""Sign-up, sign-in and password forms. Flask-WTF adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length

from app.services.accounts import EMAIL_MAX, PASSWORD_MAX

SECOND_FACTOR_INPUT_MAX = 64


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=EMAIL_MAX)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=PASSWORD_MAX)])
    age_confirmed = BooleanField("I am at least 18 years old")
    terms_accepted = BooleanField("I accept the Terms of Service")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=EMAIL_MAX)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=PASSWORD_MAX)])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=EMAIL_MAX)])


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[InputRequired(), Length(max=PASSWORD_MAX)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[InputRequired(), Length(max=PASSWORD_MAX)]
    )
    password = PasswordField("New password", validators=[InputRequired(), Length(max=PASSWORD_MAX)])


class AcceptTermsForm(FlaskForm):
    """Carries the version of the Terms shown, so that only what was read is accepted."""

    version = HiddenField(validators=[Length(max=16)])


class SecondFactorForm(FlaskForm):
    """A code from the authenticator app, or (when verifying) a recovery code."""

    code = StringField(
        "Authentication code", validators=[InputRequired(), Length(max=SECOND_FACTOR_INPUT_MAX)]
    )
