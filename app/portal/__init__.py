from flask import Blueprint

bp = Blueprint("portal", __name__)

from app.portal import account, activity, credits, refunds, views  # noqa: E402,F401
