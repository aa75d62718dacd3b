from flask import Blueprint, abort
from flask_login import current_user

bp = Blueprint("admin", __name__)


@bp.before_request
def require_admin() -> None:
    """The whole admin area, guarded once: anyone but a signed-in admin sees a 404."""
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)


from app.admin import views  # noqa: E402,F401
