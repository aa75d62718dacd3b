"""Issue 10 item 3: the CSV export of the filtered log: one row per request, every token class,
costs as exact decimals, streamed in batches (constant memory: bench/usage_bench.py measures it)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services import usage_stats
from app.services.keys import create_key
from tests.web.usage_records import add_usage

HEADER = [
    "time_utc",
    "request_id",
    "key_name",
    "model",
    "provider",
    "route",
    "streamed",
    "status",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_credits",
    "latency_ms",
    "time_to_first_token_ms",
]


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_item3_the_export_has_one_row_per_request_with_exact_decimals(app, browser, make_account):
    account_id = make_account("user@example.com")
    other_id = make_account("other@example.com")
    at = datetime.now(UTC).replace(hour=1, minute=2, second=3, microsecond=456_789)
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="laptop, “main”")
        key_id = key.id
        add_usage(
            account_id,
            key_id,
            request_id="req-first",
            model="claude-sonnet-4-5",
            provider="anthropic",
            route="anthropic.messages",
            status="partial",
            streamed=True,
            cost=12_345_678_901_234,
            at=at - timedelta(days=1),
            input_tokens=1,
            cache_read_tokens=2,
            cache_write_5m_tokens=3,
            cache_write_1h_tokens=4,
            output_tokens=5,
            reasoning_tokens=6,
            latency_ms=1_234,
            time_to_first_token_ms=321,
        )
        add_usage(account_id, None, request_id="req-second", cost=1_500_000, at=at)
        add_usage(other_id, None, request_id="req-theirs", cost=7, at=at)
        db.session.commit()
    browser.login("user@example.com")
    response = browser.get("/usage.csv?range=7d")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="onekey-usage-')
    assert response.is_streamed
    rows = rows_of(response)
    assert rows[0] == HEADER
    stamp = (at - timedelta(days=1)).strftime("%Y-%m-%d")
    assert rows[1] == [
        f"{stamp}T01:02:03.456789Z",
        "req-first",
        "laptop, “main”",
        "claude-sonnet-4-5",
        "anthropic",
        "anthropic.messages",
        "true",
        "partial",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "12345.678901234",
        "1234",
        "321",
    ]
    assert rows[2][:3] == [f"{at:%Y-%m-%d}T01:02:03.456789Z", "req-second", ""]
    assert rows[2][6:8] == ["false", "ok"]
    assert rows[2][14:] == ["0.001500000", "", ""]  # nine decimals, never rounded
    assert len(rows) == 3  # oldest first; the other account's record is not there


def test_item3_the_export_follows_the_filters(app, browser, make_account):
    account_id = make_account("user@example.com")
    with app.app_context():
        add_usage(account_id, request_id="old", at=utcnow() - timedelta(days=20))
        add_usage(account_id, request_id="grok", model="grok-4", provider="xai")
        add_usage(account_id, request_id="mini")
        db.session.commit()
    browser.login("user@example.com")
    ids = [row[1] for row in rows_of(browser.get("/usage.csv?range=7d"))[1:]]
    assert ids == ["grok", "mini"]
    ids = [row[1] for row in rows_of(browser.get("/usage.csv?range=30d&provider=openai"))[1:]]
    assert ids == ["old", "mini"]
    assert rows_of(browser.get("/usage.csv?range=today&status=estimated")) == [HEADER]


def test_item3_the_export_is_read_in_batches_by_keyset(app, browser, make_account, monkeypatch):
    """Batches of 4 rows: each chunk is one batch's rows, and together they are every record once,
    records sharing a timestamp included."""
    account_id = make_account("user@example.com")
    at = utcnow().replace(hour=0, minute=1, second=0, microsecond=0)
    with app.app_context():
        for n in range(11):
            add_usage(account_id, request_id=f"r{n:02d}", at=at + timedelta(seconds=n // 2))
        db.session.commit()
    monkeypatch.setattr(usage_stats, "EXPORT_BATCH", 4)
    browser.login("user@example.com")
    response = browser.get("/usage.csv?range=today")
    chunks = [chunk.decode() for chunk in response.response]
    assert len(chunks) == 3  # 4 + 4 + 3 rows (the header rides with the first)
    assert [len(chunk.splitlines()) for chunk in chunks] == [5, 4, 3]
    ids = [row[1] for row in csv.reader(io.StringIO("".join(chunks)))][1:]
    assert ids == [f"r{n:02d}" for n in range(11)]


def test_item3_a_key_name_cannot_become_a_spreadsheet_formula(app, browser, make_account):
    account_id = make_account("user@example.com")
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="=HYPERLINK(1)")
        add_usage(account_id, key.id)
        db.session.commit()
    browser.login("user@example.com")
    rows = rows_of(browser.get("/usage.csv"))
    assert rows[1][2] == "'=HYPERLINK(1)"


def test_item3_the_export_needs_sign_in(client):
    assert client.get("/usage.csv").status_code == 302
