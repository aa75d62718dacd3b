from flask import Blueprint

bp = Blueprint("portal", __name__)

from app.portal import account, activity, credits, refunds, refusals, views  # noqa: E402,F401
