"""Every failure path: the caller gets an error in its dialect, proven usage only is billed, and
`flask ledger check` holds afterwards."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Hold, UsageRecord
from app.services.ledger import check_invariants
from tests.proxy.billing import open_holds, wait_for_settlement
from tests.proxy.conftest import LiveServer, make_funded_key


def ledger_is_consistent(app) -> None:
    with app.app_context():
        assert check_invariants() == []
        assert db.session.scalar(select(Hold).where(Hold.status == "open")) is None


def last_record(app, account_id: int) -> UsageRecord:
    with app.app_context():
        record = db.session.scalar(
            select(UsageRecord)
            .where(UsageRecord.account_id == account_id)
            .order_by(UsageRecord.id.desc())
        )
        db.session.expunge_all()
        return record


def balance(app, account_id: int) -> int:
    with app.app_context():
        return db.session.get(Account, account_id).balance_nanocredits


def chat(server, key, model: str, text: str, **kwargs):
    return requests.post(
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}], **kwargs},
        timeout=30,
        stream=kwargs.get("stream", False),
    )


@pytest.mark.parametrize(
    ("model", "dialect_check"),
    [
        ("gpt-4o-mini", lambda body: body["error"]["code"] == "invalid_request_error"),
        ("grok-3-mini", lambda body: body["error"]["message"]),
        ("claude-haiku-4-5", lambda body: body["error"]["type"] == "invalid_request_error"),
        ("gemini-3.5-flash-lite", lambda body: body["error"]["type"] == "invalid_request_error"),
    ],
)
def test_upstream_4xx_is_passed_on_without_charge(
    app, live_server, funded_key, model, dialect_check
):
    key, account_id, _ = funded_key("5")
    response = chat(live_server, key, model, "bad [[fake:error=400]]")
    assert response.status_code == 400
    assert dialect_check(response.json())
    assert balance(app, account_id) == 5_000_000_000
    assert last_record(app, account_id).status == "upstream_error"
    ledger_is_consistent(app)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_upstream_429_and_5xx_pass_retry_after_and_charge_nothing(
    app, live_server, funded_key, status
):
    key, account_id, _ = funded_key("5")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    expected = openai.RateLimitError if status == 429 else openai.InternalServerError
    with pytest.raises(expected) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"x [[fake:error={status}]]"}],
        )
    assert raised.value.status_code == (429 if status == 429 else 502)
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "7"
    assert balance(app, account_id) == 5_000_000_000
    ledger_is_consistent(app)


def test_operator_auth_failure_upstream_is_a_502(app, live_server, funded_key):
    key, account_id, _ = funded_key("5")
    response = chat(live_server, key, "gpt-4o-mini", "x [[fake:error=401]]")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert balance(app, account_id) == 5_000_000_000


def test_upstream_timeout_is_a_504(app, live_server, funded_key):
    key, account_id, _ = funded_key("5")
    started = time.monotonic()
    response = chat(live_server, key, "gpt-4o-mini", "x [[fake:hang]]")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 15
    assert balance(app, account_id) == 5_000_000_000
    ledger_is_consistent(app)


def test_anthropic_route_errors_in_anthropic_dialect(app, live_server, funded_key):
    key, account_id, _ = funded_key("5")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "x [[fake:error=404]]"}],
        )
    assert raised.value.body["type"] == "error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert balance(app, account_id) == 5_000_000_000


def test_gemini_route_errors_in_google_dialect(live_server, funded_key):
    key, _, _ = funded_key("5")
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=f"{live_server.url}/gemini")
    )
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(
            model="gemini-3.5-flash-lite", contents="x [[fake:error=400]]"
        )
    assert raised.value.code == 400
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model="no-such-model", contents="x")
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-3.5-flash-lite", "gemini"),
    ],
)
def test_upstream_drop_mid_stream_bills_proven_usage(
    app, live_server, fakes, funded_key, model, provider
):
    key, account_id, _ = funded_key("5")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x [[fake:drop=2 chunks=6]]"}],
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received  # the part that arrived was relayed
    wait_for_settlement(app, account_id)
    record = last_record(app, account_id)
    call = fakes.last_call(provider)
    delivered_tokens = -(-len("".join(received).encode()) // 4)
    if call.usage_reported:
        assert record.status == "partial"
        assert record.output_tokens >= delivered_tokens  # never less than what was delivered
    else:
        assert record.status == "estimated"
        assert record.output_tokens == delivered_tokens
    assert record.cost_nanocredits > 0
    assert balance(app, account_id) == 5_000_000_000 - record.cost_nanocredits
    ledger_is_consistent(app)


def test_native_anthropic_stream_cut_short_bills_at_least_what_was_delivered(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    received = []
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=500,
            messages=[{"role": "user", "content": "x [[fake:drop=30 chunks=40]]"}],
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert len(received) == 30
    wait_for_settlement(app, account_id)
    record = last_record(app, account_id)
    # message_start reported 1 output token; thirty deltas were delivered after it.
    assert record.status == "partial"
    assert record.output_tokens == -(-len("".join(received).encode()) // 4) > 1
    assert balance(app, account_id) == 5_000_000_000 - record.cost_nanocredits
    ledger_is_consistent(app)


def test_midstream_error_reaches_the_client_in_dialect(app, live_server, funded_key):
    key, account_id, _ = funded_key("5")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "x [[fake:midstream_error]]"}],
        ) as stream,
    ):
        for _ in stream:
            pass
    wait_for_settlement(app, account_id)
    assert last_record(app, account_id).status == "partial"
    ledger_is_consistent(app)


@pytest.mark.parametrize(
    ("model", "provider"), [("gpt-4o-mini", "openai"), ("claude-haiku-4-5", "anthropic")]
)
def test_client_disconnect_closes_upstream_and_bills_proven(
    app, live_server, fakes, funded_key, model, provider
):
    key, account_id, _ = funded_key("5")
    response = chat(live_server, key, model, "x [[fake:slow=200 chunks=20]]", stream=True)
    lines = response.iter_lines()
    for _ in range(4):
        next(lines)
    response.close()
    call = fakes.wait_for_calls(1, timeout=20)[0]
    assert not call.completed  # the gateway hung up on the provider too
    assert call.chunks_sent < 20
    wait_for_settlement(app, account_id)
    record = last_record(app, account_id)
    assert record.status in ("partial", "estimated")
    ledger_is_consistent(app)


def test_gemini_stream_is_drained_after_client_disconnect(app, live_server, fakes, funded_key):
    key, account_id, _ = funded_key("5")
    response = requests.post(
        f"{live_server.url}/gemini/v1beta/models/gemini-3.5-flash-lite:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": key},
        json={"contents": [{"parts": [{"text": "x [[fake:long_after_disconnect chunks=3]]"}]}]},
        stream=True,
        timeout=30,
    )
    next(response.iter_lines())
    response.close()
    call = fakes.wait_for_calls(1, timeout=30)[0]
    assert call.completed  # Google bills the whole generation: the gateway read it to the end
    wait_for_settlement(app, account_id, timeout=30)
    record = last_record(app, account_id)
    assert record.status == "ok"
    assert record.output_tokens == call.usage_reported["candidatesTokenCount"]
    ledger_is_consistent(app)


def test_provider_not_configured_is_a_503(app, fakes, catalog):
    server = LiveServer(app, fakes, XAI_API_KEY="")
    server.start()
    try:
        key, _, _ = make_funded_key(app, "5")
        response = chat(server, key, "grok-4.3", "hi")
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["code"] == "provider_unavailable"
    assert open_holds(app) == 0


def test_wrong_operator_key_upstream_is_a_502_not_the_customers_400(app, catalog):
    from tests.fakes import FakeUpstreams

    with FakeUpstreams(
        keys={"xai": "right", "gemini": "right"}, realistic_auth_errors=True
    ) as other:
        server = LiveServer(app, other, XAI_API_KEY="wrong", GEMINI_API_KEY="wrong")
        server.start()
        try:
            key, account_id, _ = make_funded_key(app, "5")
            for model in ("grok-4.3", "gemini-3.5-flash-lite"):
                response = chat(server, key, model, "hi")
                assert response.status_code == 502, response.text
                assert response.json()["error"]["code"] == "upstream_error"
        finally:
            server.stop()
    assert balance(app, account_id) == 5_000_000_000


@pytest.mark.parametrize(
    "store",
    [
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
        {"REDIS_URL": "redis://127.0.0.1:1/0"},
    ],
)
def test_onekeys_own_stores_away_is_a_retryable_503_in_each_dialect(app, fakes, catalog, store):
    key, account_id, _ = make_funded_key(app, "5")
    server = LiveServer(app, fakes, **store)
    server.start()
    try:
        headers = {"Authorization": f"Bearer {key}", "x-api-key": key, "x-goog-api-key": key}
        answers = {
            "openai": requests.post(
                f"{server.url}/v1/chat/completions",
                headers=headers,
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            ),
            "anthropic": requests.post(
                f"{server.url}/anthropic/v1/messages",
                headers=headers,
                json={
                    "model": "claude-haiku-4-5",
                    "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=30,
            ),
            "google": requests.post(
                f"{server.url}/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent",
                headers=headers,
                json={"contents": [{"parts": [{"text": "hi"}]}]},
                timeout=30,
            ),
        }
    finally:
        server.stop()
    for dialect, response in answers.items():
        assert response.status_code == 503, (dialect, response.text[:300])
        assert response.headers["x-should-retry"] == "true"
        assert response.headers["Retry-After"] == "1"
        body = response.json()
        if dialect == "openai":
            assert body["error"]["code"] == "gateway_unavailable"
        elif dialect == "anthropic":
            assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        else:
            assert body["error"]["status"] == "UNAVAILABLE"
    assert fakes.calls_for() == []  # nothing went upstream
    assert balance(app, account_id) == 5_000_000_000
    ledger_is_consistent(app)
