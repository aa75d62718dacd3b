"""The Terms version has one source: the 'Last updated' line of the content file."""

from __future__ import annotations

import pytest

from app.services.terms import TERMS_PATH, current_terms_version, load_terms, version_of

TERMS = """Terms of Service

Last updated: {date}

1. Service Description

OneKey provides a unified API key.
"""


def test_terms_version_is_the_content_files_last_updated_date():
    assert "Last updated: February 19, 2026" in TERMS_PATH.read_text(encoding="utf-8")
    assert current_terms_version() == "2026-02-19"


def test_a_changed_last_updated_line_is_a_new_terms_version(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text(TERMS.format(date="March 3, 2027"), encoding="utf-8")
    assert load_terms(path).version == "2027-03-03"


@pytest.mark.parametrize(
    ("last_updated", "version"),
    [("February 19, 2026", "2026-02-19"), ("December 1, 2030", "2030-12-01")],
)
def test_version_of_a_last_updated_date(last_updated, version):
    assert version_of(last_updated) == version


@pytest.mark.parametrize(
    "last_updated", ["19 February 2026", "Febtober 1, 2026", "February 30, 2026"]
)
def test_terms_with_an_unreadable_date_are_refused(tmp_path, last_updated):
    path = tmp_path / "terms.txt"
    path.write_text(TERMS.format(date=last_updated), encoding="utf-8")
    with pytest.raises(ValueError, match="Last updated"):
        load_terms(path)
