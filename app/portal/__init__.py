from flask import Blueprint

bp = Blueprint("portal", __name__)

from app.portal import (  # noqa: E402,F401
    account,
    activity,
    credits,
    refunds,
    refusals,
    usage,
    views,
)
