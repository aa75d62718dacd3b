import re

from flask import Blueprint, abort, request
from flask_login import current_user

from app.auth import two_factor

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _in_admin_area() -> bool:
    # By path as well as by blueprint: routing answers a missing slash (308), doubled slashes (308)
    # and a wrong method (405) before any blueprint is known, and each would reveal the area.
    path = re.sub(r"/{2,}", "/", request.path)
    return (
        request.blueprint == bp.name
        or path == bp.url_prefix
        or path.startswith(f"{bp.url_prefix}/")
    )


@bp.before_app_request
def require_admin():
    """The whole admin area, guarded once: anyone but a signed-in, active admin sees a 404.

    Registered app-wide and ahead of the CSRF check, so even a post without a token cannot tell
    that an admin URL exists. An active admin goes on only in a session whose second factor was
    verified and that has not been idle: otherwise every request, page, form or fragment, is sent
    to enrolment or to the code first (app/auth/two_factor.py). The account is read afresh on each
    request, so a demotion, suspension or reset applies to the very next one.
    """
    if not _in_admin_area():
        return None
    if not (
        current_user.is_authenticated and current_user.is_admin and current_user.is_active_account
    ):
        abort(404)
    step = two_factor.missing_step(current_user)
    if step is not None:
        return two_factor.send_to(step)
    two_factor.record_admin_activity()
    return None


from app.admin import catalog, health, jobs, overview, payments, refunds, views  # noqa: E402,F401
