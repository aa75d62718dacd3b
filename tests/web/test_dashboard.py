"""The dashboard's quick-start snippets run as pasted."""

from __future__ import annotations

import ast
import builtins
import html
import re

import pytest

PYTHON_SNIPPETS = ("snippet-openai", "snippet-anthropic", "snippet-gemini")


def snippet(page: str, snippet_id: str) -> str:
    match = re.search(rf'<pre id="{snippet_id}"><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no {snippet_id} on the dashboard"
    return html.unescape(match.group(1))


def names_used_but_never_bound(tree: ast.AST) -> set[str]:
    """Good enough for flat snippets: every name read must be imported, assigned or a builtin."""
    bound = set(dir(builtins))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
    return used - bound


@pytest.mark.parametrize("snippet_id", PYTHON_SNIPPETS)
def test_python_snippets_compile_and_read_the_key_from_the_environment(
    browser, make_account, catalog, snippet_id
):
    make_account("user@example.com")
    browser.login("user@example.com")
    page = browser.get("/dashboard").get_data(as_text=True)
    source = snippet(page, snippet_id)
    tree = ast.parse(source)
    compile(tree, snippet_id, "exec")
    assert names_used_but_never_bound(tree) == set()
    # The key is never a bare name: only the environment lookup mentions it.
    assert source.count("ONEKEY_API_KEY") == source.count('os.environ["ONEKEY_API_KEY"]') == 1
