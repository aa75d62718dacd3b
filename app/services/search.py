"""Search conditions shared by the pages that filter by text."""

from __future__ import annotations

from sqlalchemy import ColumnElement


def contains(column, text: str) -> ColumnElement[bool]:
    """`column` contains `text`, ignoring case; % and _ in `text` are characters, not wildcards."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")
