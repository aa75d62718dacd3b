"""Prometheus metrics at /metrics (issue 11, item 6): real requests through the live gunicorn
server counted in prometheus_client's multiprocess mode, the folder it starts from emptied, totals
surviving their workers; who may read them; and the single-process fallback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from app import metrics
from app.extensions import db, get_queue
from app.models import Account
from app.proxy import exchange as exchange_module
from app.proxy import gateway
from app.proxy.metering import Usage
from tests.helpers import Browser
from tests.proxy.conftest import LiveServer
from tests.settlement import exchange_for, open_hold

TOKEN = "metrics-token-for-the-tests-0123456789"
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
STALE_ROUTE = "/left/by/an/earlier/run"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    """The operator's metrics folder, holding a counter file of an earlier run."""
    directory = tmp_path_factory.mktemp("prometheus")
    stale = MmapedDict(str(directory / "counter_4242.db"))
    key = mmap_key(
        "onekey_http_requests",
        "onekey_http_requests_total",
        ["route", "provider", "status"],
        [STALE_ROUTE, "openai", "200"],
        "left over",
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()
    return directory


@pytest.fixture(scope="module")
def metered_server(app, fakes, metrics_dir):
    server = LiveServer(app, fakes, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server.start()
    yield server
    server.stop()


def scrape(server, token: str = TOKEN, timeout: float = 10) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    response = requests.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def chat(server, key: str, **overrides) -> requests.Response:
    return requests.post(
        f"{server.url}{CHAT}",
        headers={"Authorization": f"Bearer {key}"},
        json={**BODY, **overrides},
        timeout=30,
    )


def worker_pids(master_pid: int) -> set[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def test_issue11_item6_requests_are_counted_across_workers_in_multiprocess_mode(
    app, metered_server, metrics_dir, funded_key
):
    key, _, _ = funded_key("5")
    before = scrape(metered_server)
    # The folder was emptied at start: the earlier run's file, and its 1000, are gone.
    assert value(before, "onekey_http_requests_total", route=STALE_ROUTE, provider="openai",
                 status="200") == 0  # fmt: skip
    assert not (metrics_dir / "counter_4242.db").exists()

    assert chat(metered_server, key).status_code == 200
    assert chat(metered_server, key).status_code == 200
    streamed = chat(metered_server, key, stream=True)
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    assert chat(metered_server, key, model="no-such-model").status_code == 404

    after = scrape(metered_server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": CHAT, "provider": "openai", "status": "200"}
    assert delta("onekey_http_requests_total", **ok) == 3
    assert delta("onekey_http_requests_total", route=CHAT, provider="", status="404") == 1
    assert delta("onekey_http_request_duration_seconds_count", route=CHAT) == 4
    settled = {"provider": "openai", "outcome": "ok"}
    assert delta("onekey_proxy_request_duration_seconds_count", **settled) == 3
    assert delta("onekey_proxy_request_duration_seconds_bucket", le="+Inf", **settled) == 3
    assert delta("onekey_proxy_time_to_first_token_seconds_count", provider="openai") == 3
    assert value(after, "onekey_holds_open", purpose="request") == 0
    assert value(after, "onekey_rq_queue_jobs", queue="billing") == 0
    assert value(after, "onekey_metrics_source_up", source="database") == 1
    assert value(after, "onekey_metrics_source_up", source="redis") == 1
    assert list(metrics_dir.glob("counter_*.db")) and list(metrics_dir.glob("histogram_*.db"))

    # Every worker killed and replaced: the totals are still there, read from the dead workers'
    # files (a per-process registry would start again from nothing).
    master = metered_server.process.pid
    old = worker_pids(master)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(worker_pids(master) - old) < len(old):
        assert time.monotonic() < deadline, "gunicorn did not replace its workers"
        time.sleep(0.1)
    # The new workers take seconds to import the app; the listening socket holds the request.
    while True:
        try:
            survived = scrape(metered_server, timeout=30)
            break
        except requests.RequestException:
            assert time.monotonic() < deadline, "the new workers did not answer"
    assert value(survived, "onekey_http_requests_total", **ok) == value(
        after, "onekey_http_requests_total", **ok
    )
    assert value(survived, "onekey_proxy_request_duration_seconds_count", **settled) == value(
        after, "onekey_proxy_request_duration_seconds_count", **settled
    )


def test_issue11_item6_a_scraper_needs_the_token_and_customers_see_nothing(
    metered_server, funded_key
):
    url = f"{metered_server.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 404
    wrong = requests.get(url, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert "onekey_" not in wrong.text
    key, _, _ = funded_key("1")
    as_customer = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert as_customer.status_code == 401
    assert (
        "onekey_http_requests_total"
        in requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    )


def test_issue11_item6_without_a_token_only_an_active_admin_reads_the_default_registry(
    app, make_account
):
    """The tests' app is one process without PROMETHEUS_MULTIPROC_DIR: its own registry."""
    assert metrics.MULTIPROCESS_DIR is None
    assert app.config["METRICS_TOKEN"] == ""
    make_account("customer@example.com")
    make_account("boss@example.com", admin=True)
    former = make_account("former@example.com", admin=True)
    with app.app_context():
        db.session.get(Account, former).status = "suspended"
        db.session.commit()
    anonymous = app.test_client()
    assert anonymous.get("/metrics").status_code == 404
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404
    for email, status in (
        ("customer@example.com", 404),
        ("former@example.com", 404),
        ("boss@example.com", 200),
    ):
        browser = Browser(app.test_client())
        browser.login(email)
        assert browser.get("/metrics").status_code == status
    scraped = samples(browser.get("/metrics").get_data(as_text=True))
    assert value(scraped, "onekey_http_requests_total", route="/metrics", provider="", status="200")
    assert value(scraped, "onekey_holds_open", purpose="refund") == 0
    assert any(name.startswith("python_gc") for name, _ in scraped)  # the default collectors


def test_issue11_item8_an_admin_session_reads_the_metrics_only_past_the_second_factor(
    app, make_account
):
    """As for the admin area: a password alone (no second factor, or one not entered in this
    session) reads nothing."""
    make_account("new@example.com", admin=True, two_factor=False)
    make_account("boss@example.com", admin=True)
    unenrolled = Browser(app.test_client())
    unenrolled.login("new@example.com")
    assert unenrolled.get("/metrics").status_code == 404
    halfway = Browser(app.test_client())
    halfway.login("boss@example.com", second_factor=False)
    assert halfway.get("/metrics").status_code == 404


def test_issue11_item6_a_settlement_the_database_refused_is_counted(app, make_account, monkeypatch):
    """As tests/unit/test_settlement.py makes the database fail at the moment of settling."""
    account_id = make_account("user@example.com")
    hold_id, key_id = open_hold(app, account_id)
    exchange = exchange_for(account_id, key_id, hold_id)

    class Relay:
        usage = Usage(input=10, output=20, prompt_tokens=10)
        usage_complete = True
        finished = True
        failed = False
        delivered_bytes = 10

    def database_gone(values):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    def failures() -> float:
        labels = {"provider": "openai"}
        return REGISTRY.get_sample_value("onekey_settlement_failures_total", labels) or 0.0

    counted = failures()
    monkeypatch.setattr(exchange_module, "record_usage", database_gone)
    with app.test_request_context():
        gateway.settle(app, exchange, Relay(), "ok")
    assert failures() == counted + 1
    with app.app_context():
        assert get_queue("billing").count == 1  # queued for the worker, as before
