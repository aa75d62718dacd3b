from flask import Blueprint

bp = Blueprint("portal", __name__)

from app.portal import account, credits, refunds, usage, views  # noqa: E402,F401
