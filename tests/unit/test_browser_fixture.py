"""The browser tests skip without Chromium on a developer's machine, but never in CI."""

from __future__ import annotations

import os
import subprocess
import sys

from app.config import PROJECT_ROOT


def run_browser_tests_without_chromium(**env: str) -> subprocess.CompletedProcess:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "TEST_DATABASE_URL", "TEST_REDIS_URL")
    }
    environment.update(ONEKEY_CHROMIUM="/nonexistent/chromium", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/browser"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_browser_tests_skip_without_chromium_outside_ci():
    result = run_browser_tests_without_chromium()
    assert result.returncode == 0, result.stdout
    assert "skipped" in result.stdout


def test_browser_tests_fail_without_chromium_in_ci():
    result = run_browser_tests_without_chromium(CI="true")
    assert result.returncode != 0
    assert "no Chromium at /nonexistent/chromium, and CI needs the browser tests" in result.stdout
