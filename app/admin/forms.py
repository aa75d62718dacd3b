"""Admin forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from app.services.accounts import REASON_MAX


class ReasonForm(FlaskForm):
    reason = TextAreaField(
        "Reason (recorded in the audit log)",
        validators=[DataRequired("Give a reason."), Length(max=REASON_MAX)],
        filters=[lambda value: value.strip() if value else value],
    )
