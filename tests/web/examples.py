"""Run a page's code examples as a reader pastes them, against a live OneKey and the fake
upstreams: every `<pre class="example">` block of the page, unchanged.

A shell example runs in bash after the page's own `export ONEKEY_API_KEY=...` line, with the
placeholder replaced by a real key (the one edit the page asks of its reader). Python examples
run in one fresh interpreter of the project's virtualenv (which has the official SDKs), each in a
namespace of its own and from an empty folder, with the key in the environment as that line sets it.
Also: the tables of a page, read as a reader sees them.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from app.public.docs import KEY_PLACEHOLDER, KEY_VARIABLE
from tests.fakes.upstreams import FakeUpstreams
from tests.proxy.conftest import UPSTREAM_KEYS, LiveServer

EXAMPLE = re.compile(
    r'<pre id="(?P<id>[^"]+)" class="example" data-run="(?P<run>[a-z]+)"><code>(?P<source>.*?)</code></pre>',
    re.S,
)
ENV_EXAMPLE = "example-env"
# Limits unlike the defaults, so that a page showing them read them from the config.
SERVER_LIMITS = {
    "MAX_REQUEST_BYTES": str(3 * 1024 * 1024),
    "RATE_LIMIT_RPM": "500",
    "MAX_CONCURRENT_PER_ACCOUNT": "7",
}
RUN_TIMEOUT_SECONDS = 120
# What each provider's fake answers: "Hello from <name>".
FAKE_NAMES = {"openai": "openai", "anthropic": "anthropic", "google": "gemini", "xai": "xai"}

# Runs each snippet of a JSON list read from stdin in a fresh namespace, as `python file.py`
# would; answers a JSON list of {"ok", "output"}.
PYTHON_RUNNER = r"""
import contextlib, io, json, sys, traceback
results = []
for source in json.load(sys.stdin):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<example>", "exec"), {"__name__": "__main__"})
        results.append({"ok": True, "output": out.getvalue()})
    except BaseException:
        results.append({"ok": False, "output": out.getvalue() + traceback.format_exc()})
sys.__stdout__.write(json.dumps(results))
"""


@dataclass(frozen=True)
class Example:
    id: str
    run: str  # "shell" or "python"
    source: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    output: str  # what it printed
    errors: str = ""  # a shell example's stderr (curl's progress meter, say)


def page_examples(page: str) -> dict[str, Example]:
    found = {}
    for match in EXAMPLE.finditer(page):
        assert match["id"] not in found, f"two examples with the id {match['id']}"
        found[match["id"]] = Example(match["id"], match["run"], html.unescape(match["source"]))
    return found


def key_line(examples: dict[str, Example], key: str) -> str:
    """The page's export line with the reader's key in place of the placeholder."""
    line = examples[ENV_EXAMPLE].source
    assert line == f'export {KEY_VARIABLE}="{KEY_PLACEHOLDER}"'
    return line.replace(KEY_PLACEHOLDER, key)


def run_examples(examples: dict[str, Example], key: str, workdir: Path) -> dict[str, Outcome]:
    """Run every example but the export line; returns each one's outcome under its name in
    `examples`."""
    base_env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "LANG": "C.UTF-8"}
    export = key_line(examples, key)
    unknown = {e.run for e in examples.values()} - {"shell", "python"}
    assert not unknown, f"examples of an unknown kind: {unknown}"
    outcomes = {}
    for name, example in examples.items():
        assert KEY_PLACEHOLDER not in example.source or example.id == ENV_EXAMPLE
        if example.run == "shell" and example.id != ENV_EXAMPLE:
            done = subprocess.run(
                ["bash", "-c", f"{export}\n{example.source}"],
                env=base_env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_SECONDS,
            )
            outcomes[name] = Outcome(done.returncode == 0, done.stdout, done.stderr)
    python = {name: e for name, e in examples.items() if e.run == "python"}
    if python:
        done = subprocess.run(
            [sys.executable, "-c", PYTHON_RUNNER],
            input=json.dumps([e.source for e in python.values()]),
            env={**base_env, KEY_VARIABLE: key},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, done.stderr
        for name, result in zip(python, json.loads(done.stdout), strict=True):
            outcomes[name] = Outcome(result["ok"], result["output"])
    return outcomes


@contextmanager
def live_server_with_fakes(app):
    """A live OneKey (gunicorn) before fake upstreams of its own, with SERVER_LIMITS; yields
    the server (its `fakes` set)."""
    with FakeUpstreams(keys=UPSTREAM_KEYS) as fakes:
        server = LiveServer(app, fakes, **SERVER_LIMITS)
        server.fakes = fakes
        server.start()
        try:
            yield server
        finally:
            server.stop()


# --- reading pages ---------------------------------------------------------------------------


class Tables(HTMLParser):
    """The rows of every table with an id: {table id: [(row attributes, [cell texts])]}."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[str]]]] = {}
        self.table = None
        self.cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self.table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self.table is not None:
            self.table.append((attrs, []))
        elif tag in ("td", "th") and self.table is not None and self.table:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.cell is not None:
            self.table[-1][1].append(re.sub(r"\s+", " ", "".join(self.cell)).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def tables_of(page: str) -> dict[str, list[tuple[dict, list[str]]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def rows_by(page: str, table: str, attribute: str) -> dict[str, list[str]]:
    return {
        attrs[attribute]: cells for attrs, cells in tables_of(page)[table] if attribute in attrs
    }


def text_of(page: str) -> str:
    """The text a reader sees, in single spaces."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page)))
