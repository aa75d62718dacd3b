"""gunicorn's access log: no query strings, no password-reset tokens."""

from __future__ import annotations

import os
import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from app.config import PROJECT_ROOT

SETTINGS = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))


def access_log_line(tmp_path, method: str, path: str, query: str = "") -> str:
    """The line gunicorn's configured logger writes for one request."""
    config = Config()
    log_file = tmp_path / "access.log"
    config.set("accesslog", str(log_file))
    config.set("access_log_format", SETTINGS["access_log_format"])
    config.set("logger_class", SETTINGS.get("logger_class", "gunicorn.glogging.Logger"))
    logger = config.logger_class(config)
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "RAW_URI": f"{path}?{query}" if query else path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", headers=[("X-Request-Id", "r1")], sent=10)
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=5))
    for handler in logger.access_log.handlers:
        handler.close()
    return log_file.read_text()


def test_query_strings_are_left_out(tmp_path):
    line = access_log_line(tmp_path, "POST", "/v1/chat/completions", "key=ok-secretsecret")
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in line
    assert "secretsecret" not in line


@pytest.mark.parametrize("path", ["/password/reset/eyJpZCI6MX0.Z1.sig", "//password/reset/tok.en"])
def test_reset_tokens_are_redacted(tmp_path, path):
    line = access_log_line(tmp_path, "GET", path)
    assert "/password/reset/[redacted]" in line
    assert path.rsplit("/", 1)[1] not in line


def test_other_paths_are_logged_as_they_are(tmp_path):
    line = access_log_line(tmp_path, "GET", "/password/forgot")
    assert '"GET /password/forgot HTTP/1.1"' in line


def test_a_graceful_stop_outlasts_the_upstream_read_timeout(monkeypatch):
    """A non-streaming call in flight when the server is told to stop finishes and is billed."""
    monkeypatch.delenv("WEB_GRACEFUL_TIMEOUT", raising=False)
    monkeypatch.setenv("UPSTREAM_READ_TIMEOUT", "300")
    assert runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))["graceful_timeout"] > 300
    monkeypatch.setenv("WEB_GRACEFUL_TIMEOUT", "20")
    assert runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))["graceful_timeout"] == 20


@pytest.fixture
def metrics_environment():
    """The variables the metrics hooks set, restored afterwards: this process's metrics chose
    their mode at import and must not be pointed at a folder now."""
    names = ("PROMETHEUS_MULTIPROC_DIR", SETTINGS["METRICS_DIR_CREATED"])
    saved = {name: os.environ.pop(name, None) for name in names}
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


def test_issue11_item6_without_a_metrics_folder_the_server_makes_one_and_removes_it(
    metrics_environment,
):
    SETTINGS["on_starting"](None)
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert folder.is_dir() and not any(folder.iterdir())
    (folder / "counter_1.db").write_bytes(b"")
    SETTINGS["on_exit"](None)
    assert not folder.exists()


def test_issue11_item6_the_operators_metrics_folder_is_emptied_of_metrics_only(
    metrics_environment, tmp_path
):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "histogram_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("the operator's")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    SETTINGS["on_starting"](None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    SETTINGS["on_exit"](None)
    assert tmp_path.is_dir()  # not ours to remove


def test_issue11_item6_a_dead_workers_live_gauges_go_and_its_counters_stay(
    metrics_environment, tmp_path
):
    for name in ("gauge_livesum_77.db", "gauge_liveall_77.db", "gauge_livesum_78.db",
                 "gauge_all_77.db", "counter_77.db", "histogram_77.db"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    SETTINGS["child_exit"](None, SimpleNamespace(pid=77))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_77.db",
        "gauge_all_77.db",
        "gauge_livesum_78.db",
        "histogram_77.db",
    ]
