from flask import Blueprint, abort, request
from flask_login import current_user

bp = Blueprint("admin", __name__)


@bp.before_app_request
def require_admin() -> None:
    """The whole admin area, guarded once: anyone but a signed-in, active admin sees a 404.

    Registered app-wide and ahead of the CSRF check, so even a post without a token cannot tell
    that an admin URL exists.
    """
    if request.blueprint == bp.name and not (
        current_user.is_authenticated and current_user.is_admin and current_user.is_active_account
    ):
        abort(404)


from app.admin import payments, views  # noqa: E402,F401
