"""Sign-up, sign-in and password forms. Flask-WTF adds the CSRF token to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length
from wtforms.widgets import PasswordInput

from app.services.accounts import EMAIL_MAX, PASSWORD_MAX

SECOND_FACTOR_INPUT_MAX = 64


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=EMAIL_MAX)])
    # Typed again after a refused sign-up would be a chore: the page shows it back (and is not
    # cached: the view says no-store).
    password = PasswordField(
        "Password",
        validators=[InputRequired(), Length(max=PASSWORD_MAX)],
        widget=PasswordInput(hide_value=False),
    )
    age_confirmed = BooleanField("I am at least 18 years old")
    terms_accepted = BooleanField("I accept the Terms of Service")

    def add_problems(self, problems: dict[str, str]) -> None:
        """Add the service's reasons to the fields that have no error of their own yet, so that
        every problem shows at once."""
        for name, message in problems.items():
            field = self._fields.get(name)
            if field is None:
                self.form_errors.append(message)
            elif not field.errors:
                field.errors = [message]

    @property
    def first_invalid(self) -> str | None:
        """The name of the first field with an error (the page focuses it): the email field
        when only the form as a whole was refused."""
        for name in ("email", "password", "age_confirmed", "terms_accepted"):
            if self._fields[name].errors:
                return name
        return "email" if self.form_errors or self.csrf_token.errors else None


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
