from flask import Blueprint

bp = Blueprint("portal", __name__)

from app.portal import credits, views  # noqa: E402,F401
