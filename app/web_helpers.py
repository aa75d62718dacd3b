"""What the page views share: one URL answering with its whole page or, to htmx, the fragment that
changed; and the paging of their lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import make_response, render_template, request
from flask.wrappers import Response
from sqlalchemy import Select, func, select

from app.extensions import db


def is_fragment_request() -> bool:
    """Whether htmx asks for a part of the page. A history restore (the page was not in htmx's
    cache) asks for the whole page, as a plain request does."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page_or_fragment(
    page_template: str, fragment_template: str, *, status_code: int = 200, **context: Any
) -> Response:
    """The fragment to htmx, the whole page otherwise, from one context, so the two cannot
    disagree. Responses of every HTML page already vary on HX-Request (app/web.py)."""
    template = fragment_template if is_fragment_request() else page_template
    return make_response(render_template(template, **context), status_code)


def page_number(name: str = "page") -> int:
    """The page a list is asked for: a whole number from 1, anything else is the first."""
    return max(request.args.get(name, 1, type=int) or 1, 1)


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, which page of how many, and the count of all rows."""

    items: list
    page: int
    pages: int
    total: int
    per_page: int

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(query: Select, page: int, per_page: int) -> Page:
    """Page `page` (from 1; past the last, the last) of an ordered query. A query of one entity or
    column pages its values, one of several pages its rows."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    paged = query.limit(per_page).offset((page - 1) * per_page)
    if len(query.column_descriptions) == 1:
        items = list(db.session.scalars(paged))
    else:
        items = list(db.session.execute(paged).all())
    return Page(items=items, page=page, pages=pages, total=total, per_page=per_page)
