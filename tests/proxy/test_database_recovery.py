"""Without a pre-ping round trip per checkout (DESIGN.md, "The hot path"), a connection the database
dropped is found out by the statement that uses it: that request gets a retryable 503 in its
dialect, nothing is held, and the next requests run on fresh connections."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.extensions import db
from app.services.ledger import check_invariants
from tests.proxy.billing import open_holds

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def post(server, key: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=BODY,
        timeout=30,
    )


def drop_other_connections(app) -> int:
    """Terminate every other session on the test database, as a database restart would."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        dropped = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    engine.dispose()
    return dropped


def test_dropped_database_connections_cost_one_retryable_503_each_then_recover(
    app, live_server, funded_key
):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("SQLite has no server to drop connections")
    key, _, _ = funded_key("5")
    for _ in range(6):  # both workers hold pooled connections now
        assert post(live_server, key).status_code == 200
    assert drop_other_connections(app) > 0
    statuses = []
    for _ in range(20):
        response = post(live_server, key)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "gateway_unavailable"
            assert response.headers["x-should-retry"] == "true"
    # One failed statement per worker (two workers) finds its pool stale; every other succeeds.
    assert statuses.count(503) <= 2
    assert statuses.count(200) == len(statuses) - statuses.count(503)
    with app.app_context():
        db.engine.dispose()  # this test process's own pooled connections were dropped too
    assert open_holds(app) == 0
    with app.app_context():
        assert check_invariants() == []
