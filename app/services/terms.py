"""The Terms of Service, kept as a content file and parsed into sections for the terms page."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

TERMS_PATH = Path(__file__).resolve().parent.parent / "content" / "terms-of-service.txt"
SUPPORT_EMAIL_MARKER = "{support_email}"
_HEADING = re.compile(r"^(\d+)\.\s+(.+)$")
_BULLET = re.compile(r"^\s*•\s+(.+)$")
# English month names whatever the process's locale: the file is written in English.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_LAST_UPDATED = re.compile(r"^(?P<month>[A-Z][a-z]+) (?P<day>\d{1,2}), (?P<year>\d{4})$")


@dataclass
class Section:
    number: int
    title: str
    # Each block is ("p", text) or ("ul", [items]).
    blocks: list[tuple[str, object]] = field(default_factory=list)


@dataclass
class Terms:
    title: str
    last_updated: str
    # What accounts record on accepting these Terms: the date they were last updated, ISO style.
    version: str
    sections: list[Section]


def version_of(last_updated: str) -> str:
    """The version a 'Last updated' date names: "February 19, 2026" is "2026-02-19".

    Raises ValueError for anything but a real date written that way.
    """
    match = _LAST_UPDATED.match(last_updated)
    if match is None or match["month"] not in _MONTHS:
        raise ValueError(f"'Last updated: {last_updated}' is not a date like February 19, 2026")
    month = _MONTHS.index(match["month"]) + 1
    try:
        return date(int(match["year"]), month, int(match["day"])).isoformat()
    except ValueError:
        raise ValueError(f"'Last updated: {last_updated}' is not a real date") from None


@cache
def load_terms(path: Path = TERMS_PATH) -> Terms:
    """Parse the content file: a title, a 'Last updated' line (a date like February 19, 2026),
    numbered sections of paragraphs and bullet lists. Raises ValueError if the file does not have
    that shape."""
    lines = path.read_text(encoding="utf-8").splitlines()
    title = lines[0].strip()
    last_updated = ""
    sections: list[Section] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line.startswith("Last updated:"):
            last_updated = line.removeprefix("Last updated:").strip()
            continue
        heading = _HEADING.match(line)
        if heading:
            sections.append(Section(int(heading.group(1)), heading.group(2).strip()))
            continue
        if not sections:
            raise ValueError(f"text before the first section: {line!r}")
        bullet = _BULLET.match(line)
        blocks = sections[-1].blocks
        if bullet:
            if not blocks or blocks[-1][0] != "ul":
                blocks.append(("ul", []))
            blocks[-1][1].append(bullet.group(1).strip())
        else:
            blocks.append(("p", line.strip()))
    if not last_updated or not sections:
        raise ValueError("the terms need a 'Last updated' line and numbered sections")
    return Terms(title, last_updated, version_of(last_updated), sections)


def current_terms_version() -> str:
    """The version of the Terms in force, which sign-up records and existing accounts accept."""
    return load_terms().version
