"""Money under concurrency, crashes and shutdown: never below zero through holds, never
over-served, every hold closed exactly once, nothing content-bearing stored anywhere."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Hold, UsageRecord
from app.services.ledger import check_invariants
from tests.proxy.billing import wait_for_settlement
from tests.proxy.conftest import LiveServer, make_funded_key

CANARY = "CANARY-7f3a9c1e-do-not-store"


def test_fifty_concurrent_requests_on_an_account_that_affords_ten(app, live_server, funded_key):
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi [[fake:slow=100]]"}],
    }
    # One request on another account tells what each costs; the account gets exactly ten of them.
    probe_key, probe_account, _ = funded_key("1")
    requests.post(
        f"{live_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {probe_key}"},
        json=body,
        timeout=60,
    ).raise_for_status()
    with app.app_context():
        cost = db.session.scalar(
            select(UsageRecord.cost_nanocredits).where(UsageRecord.account_id == probe_account)
        )
    key, account_id, _ = funded_key(f"{10 * cost / 1e9:.9f}")

    def one(_):
        return requests.post(
            f"{live_server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    served = statuses.count(200)
    assert set(statuses) <= {200, 402, 429}
    assert 1 <= served <= 10
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account.balance_nanocredits >= 0
        assert account.held_nanocredits == 0
        records = db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.account_id == account_id)
        )
        assert records == served
        assert check_invariants() == []


def test_canary_in_prompts_is_never_stored_or_logged(app, live_server, fakes, funded_key):
    key, account_id, _ = funded_key("5")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    for model in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-3.5-flash-lite", "grok-3-mini"):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"remember {CANARY}"}]
        )
        list(
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": CANARY}], stream=True
            )
        )
    requests.post(
        f"{live_server.url}/anthropic/v1/messages",
        headers={"x-api-key": key},
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": CANARY}],
        },
        timeout=30,
    )
    wait_for_settlement(app, account_id)
    assert any(CANARY in str(call.body) for call in fakes.calls)  # it did travel upstream
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)).all():
                assert CANARY not in str(row), table.name
        if db.engine.dialect.name == "sqlite":
            path = db.engine.url.database
            for suffix in ("", "-wal"):
                try:
                    raw = open(path + suffix, "rb").read()  # noqa: SIM115
                except FileNotFoundError:
                    continue
                assert CANARY.encode() not in raw
        redis = app.extensions["onekey_redis"]
        for name in redis.scan_iter(count=1000):
            assert CANARY.encode() not in name
            kind = redis.type(name)
            if kind == b"string":
                assert CANARY.encode() not in (redis.get(name) or b"")
            elif kind == b"hash":
                assert CANARY.encode() not in str(redis.hgetall(name)).encode()
            elif kind == b"list":
                assert CANARY.encode() not in b"".join(redis.lrange(name, 0, -1))
    assert CANARY not in live_server.logs()


def stop_during_stream(
    server, path: str, headers: dict, body: dict, lines: int
) -> tuple[list[bytes], float]:
    """Read a stream until `lines` lines arrived, stop the server gracefully (SIGTERM) while it
    runs; returns every line the client got, and the seconds the stop took."""
    received: list[bytes] = []

    def read_stream():
        with requests.post(
            f"{server.url}{path}", headers=headers, json=body, stream=True, timeout=60
        ) as response:
            for line in response.iter_lines():
                received.append(line)

    reader = threading.Thread(target=read_stream)
    reader.start()
    deadline = time.monotonic() + 20
    while len(received) < lines and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    server.stop(signal.SIGTERM)
    reader.join(timeout=30)
    return received, time.monotonic() - started


def test_graceful_shutdown_settles_open_streams(app, fakes, catalog):
    server = LiveServer(app, fakes, WEB_GRACEFUL_TIMEOUT="20")
    server.start()
    key, account_id, _ = make_funded_key(app, "5")
    received, stop_seconds = stop_during_stream(
        server,
        "/v1/chat/completions",
        {"Authorization": f"Bearer {key}"},
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "x [[fake:slow=300 chunks=100]]"}],
        },
        lines=6,
    )
    assert stop_seconds < 20  # the stream ended well before the graceful timeout
    assert any(b"restarting" in line for line in received)  # told in-stream, in its dialect
    with app.app_context():
        hold = db.session.scalar(select(Hold).where(Hold.account_id == account_id))
        assert hold.status == "settled"
        record = db.session.scalar(select(UsageRecord).where(UsageRecord.account_id == account_id))
        assert record.status in ("partial", "estimated")
        assert record.cost_nanocredits > 0
        assert check_invariants() == []


def test_graceful_shutdown_reads_a_gemini_stream_to_googles_final_counts(app, fakes, catalog):
    server = LiveServer(app, fakes, WEB_GRACEFUL_TIMEOUT="25")
    server.start()
    key, account_id, _ = make_funded_key(app, "5")
    stop_during_stream(
        server,
        "/gemini/v1beta/models/gemini-3.5-flash-lite:streamGenerateContent?alt=sse",
        {"x-goog-api-key": key},
        {"contents": [{"parts": [{"text": "x [[fake:slow=200 chunks=20]]"}]}]},
        lines=4,
    )
    call = fakes.wait_for_calls(1, timeout=30)[0]
    assert call.completed  # the stopping server read the generation to its end
    with app.app_context():
        record = db.session.scalar(select(UsageRecord).where(UsageRecord.account_id == account_id))
        assert record.output_tokens == call.usage_reported["candidatesTokenCount"]
        assert check_invariants() == []


def test_keepalives_only_after_upstream_answered(live_server, funded_key):
    key, _, _ = funded_key("5")
    with requests.post(
        f"{live_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "x [[fake:slow=2500 chunks=2]]"}],
        },
        stream=True,
        timeout=30,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[0].startswith(b"data: ")  # the first thing sent is upstream's first chunk
    assert b": keep-alive" in lines
    assert lines[-1] == b"data: [DONE]"
