"""Admin forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import InputRequired, Length

from app.services.accounts import REASON_MAX


class ReasonForm(FlaskForm):
    reason = TextAreaField(
        "Reason (recorded in the audit log)",
        validators=[InputRequired("Give a reason."), Length(max=REASON_MAX)],
    )
