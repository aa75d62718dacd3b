"""The Terms of Service, kept as a content file and parsed into sections for the terms page."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

TERMS_PATH = Path(__file__).resolve().parent.parent / "content" / "terms-of-service.txt"
SUPPORT_EMAIL_MARKER = "{support_email}"
_HEADING = re.compile(r"^(\d+)\.\s+(.+)$")
_BULLET = re.compile(r"^\s*•\s+(.+)$")


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
    sections: list[Section]


@cache
def load_terms(path: Path = TERMS_PATH) -> Terms:
    """Parse the content file: a title, a 'Last updated' line, numbered sections of paragraphs and
    bullet lists. Raises ValueError if the file does not have that shape."""
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
    return Terms(title, last_updated, sections)
