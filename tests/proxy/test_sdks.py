"""The official SDKs, unchanged but for base URL and key, reach every provider in both modes, and
every request is billed exactly what the provider reported."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from app.services.money import credits_to_nanos
from tests.proxy.billing import assert_billed_exactly, wait_for_settlement

CHAT_MODELS = [
    ("gpt-4o-mini", "openai"),
    ("grok-4.3", "xai"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-3.5-flash-lite", "gemini"),
]


def openai_client(server, key):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(("model", "provider"), CHAT_MODELS)
def test_openai_sdk_chat(app, live_server, fakes, funded_key, model, provider):
    key, account_id, _ = funded_key("5")
    reply = openai_client(live_server, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello [[fake:reasoning=3]]"}]
    )
    assert reply.choices[0].message.content == f"Hello from {provider}"
    assert reply.choices[0].finish_reason == "stop"
    call = fakes.wait_for_calls(1)[0]
    assert call.provider == provider
    _, cost = assert_billed_exactly(app, call, account_id, credits_to_nanos("5"), "chat")
    assert reply.usage.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize(("model", "provider"), CHAT_MODELS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_sdk_chat_stream(
    app, live_server, fakes, funded_key, model, provider, include_usage
):
    key, account_id, _ = funded_key("5")
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = openai_client(live_server, key).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Stream please [[fake:chunks=5 cached=4]]"}],
        stream=True,
        **kwargs,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from {provider} chunk3 chunk4"
    usage_chunks = [c for c in chunks if not c.choices]
    # Client code reads chunk.choices[0]: a usage chunk it did not ask for would break it.
    assert len(usage_chunks) == (1 if include_usage else 0)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    call = fakes.wait_for_calls(1)[0]
    wait_for_settlement(app, account_id)
    _, cost = assert_billed_exactly(app, call, account_id, credits_to_nanos("5"), "chat")
    if include_usage:
        assert usage_chunks[0].usage.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize(("model", "provider"), [("gpt-5-mini", "openai"), ("grok-4.3", "xai")])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_responses(app, live_server, fakes, funded_key, model, provider, stream):
    key, account_id, _ = funded_key("5")
    client = openai_client(live_server, key)
    if stream:
        events = list(
            client.responses.create(model=model, input="Hi [[fake:reasoning=2]]", stream=True)
        )
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert events[-1].type == "response.completed"
    else:
        text = client.responses.create(model=model, input="Hi [[fake:reasoning=2]]").output_text
    assert text == f"Hello from {provider}"
    call = fakes.wait_for_calls(1)[0]
    wait_for_settlement(app, account_id)
    assert_billed_exactly(app, call, account_id, credits_to_nanos("5"), "responses")


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_messages(app, live_server, fakes, funded_key, stream):
    key, account_id, _ = funded_key("5")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    request = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 256,
        "messages": [
            {"role": "user", "content": "Hello [[fake:cached=7 cache_write=5 reasoning=2]]"}
        ],
    }
    if stream:
        with client.messages.stream(**request) as events:
            text = "".join(events.text_stream)
            final = events.get_final_message()
        assert final.usage.output_tokens > 1
    else:
        text = client.messages.create(**request).content[0].text
    assert text == "Hello from anthropic"
    call = fakes.wait_for_calls(1)[0]
    assert call.body["metadata"]["user_id"].startswith("onekey-")
    wait_for_settlement(app, account_id)
    record, _ = assert_billed_exactly(app, call, account_id, credits_to_nanos("5"), "messages")
    assert record.cache_write_5m_tokens == 5


def test_anthropic_sdk_count_tokens_and_models(live_server, fakes, funded_key):
    key, _, _ = funded_key("1")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    counted = client.messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "one two three"}]
    )
    assert counted.input_tokens == 13
    ids = [m.id for m in client.models.list()]
    assert "claude-haiku-4-5" in ids and "gpt-5" not in ids


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
@pytest.mark.parametrize("stream", [False, True])
def test_google_genai_sdk(app, live_server, fakes, funded_key, api_version, stream):
    key, account_id, _ = funded_key("5")
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=f"{live_server.url}/gemini", api_version=api_version
        ),
    )
    prompt = "Hello there [[fake:reasoning=3 cached=2]]"
    if stream:
        text = "".join(
            chunk.text or ""
            for chunk in client.models.generate_content_stream(
                model="gemini-3.1-pro-preview", contents=prompt
            )
        )
    else:
        text = client.models.generate_content(model="gemini-3.1-pro-preview", contents=prompt).text
    assert text == "Hello from gemini"
    call = fakes.wait_for_calls(1)[0]
    assert call.path.startswith(f"/gemini/{api_version}/models/gemini-3.1-pro-preview:")
    wait_for_settlement(app, account_id)
    assert_billed_exactly(app, call, account_id, credits_to_nanos("5"), "gemini")


def test_prefixed_model_ids_are_accepted(live_server, fakes, funded_key):
    key, _, _ = funded_key("5")
    client = openai_client(live_server, key)
    for model, provider in [
        ("openai/gpt-4o-mini", "openai"),
        ("anthropic/claude-haiku-4-5", "anthropic"),
        ("google/gemini-3.5-flash-lite", "gemini"),
        ("x-ai/grok-3-mini", "xai"),
    ]:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == f"Hello from {provider}"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="anthropic/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )


def test_customer_key_never_travels_upstream(live_server, fakes, funded_key):
    key, _, _ = funded_key("5")
    client = openai_client(live_server, key)
    for model in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-3.5-flash-lite", "grok-3-mini"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    for call in fakes.wait_for_calls(4):
        assert key not in str(call.headers) and key not in str(call.body)
        assert not any(h.startswith("x-stainless") for h in call.headers)
    openai_call = fakes.calls_for("openai")[0]
    assert openai_call.body["user"].startswith("onekey-")
    assert openai_call.body["safety_identifier"] == openai_call.body["user"]
