"""Issue 10, items 10 and 11: the Copy button of a documentation example copies exactly the
example, under the pages' CSP (no inline script)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("path", "example_id"),
    [("/docs", "example-openai-chat"), ("/models/claude-haiku-4-5", "example-model-sdk")],
)
def test_copy_button_copies_the_example_as_shown(page, catalog, path, example_id):
    errors = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(path)
    example = page.locator(f"#{example_id}")
    example.scroll_into_view_if_needed()
    page.locator(f'[data-copy-target="{example_id}"]').click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == example.inner_text()
    assert copied.startswith("import os")
    assert page.locator(f'[data-copy-target="{example_id}"]').inner_text() == "Copied"
    assert errors == []
