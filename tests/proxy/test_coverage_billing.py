"""Billing exact to the nanocredit, end to end with the official SDKs, for what test_sdks.py does
not reach: tool calls (streamed and not) on every provider through /v1/chat/completions and the
native routes, images as data URLs, answers without usage (`estimated`), Anthropic cache reads and
5-minute / 1-hour cache writes, Gemini thinking and tool-use prompt tokens, xAI reasoning beside
completion_tokens, and long-context tiers (a prompt just below and just above the threshold).

Each case: one usage record whose classes match what the fake reported, the catalogue's price of
them at the tier the prompt reached (tests/proxy/exact.py works it out on its own), one debit,
balance = start - cost, no hold open, the ledger's invariants intact.
"""

from __future__ import annotations

import base64
import json

import pytest
from google.genai import types

from app.services.money import credits_to_nanos
from tests.proxy.exact import (
    assert_billed_exactly,
    assert_estimated,
    ceil_quarter,
    chat,
    generate,
    messages,
    responses,
    settled_record,
)

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated")

START = "20"
START_NANOS = credits_to_nanos(START)
STREAMS = [pytest.param(False, id="whole"), pytest.param(True, id="stream")]
CHAT_MODELS = [
    pytest.param("gpt-4o-mini", "openai", id="openai"),
    pytest.param("grok-3-mini", "xai", id="xai"),
    pytest.param("claude-haiku-4-5", "anthropic", id="anthropic"),
    pytest.param("gemini-2.5-flash", "gemini", id="gemini"),
]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER_ARGS = {"city": "fake", "days": 1, "unit": "celsius"}  # the fakes' arguments for it
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch):
    """Every case registers a customer who never signs in: no need for scrypt's tenth of a
    second each (only this test process hashes passwords)."""
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        "app.services.accounts.generate_password_hash",
        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1"),
    )


@pytest.fixture
def customer(funded_key):
    key, account_id, _ = funded_key(START)
    return key, account_id


def only_call(fakes, provider=None):
    calls = fakes.wait_for_calls(1, provider=provider)
    assert len(fakes.calls) == 1
    return calls[0]


def user(text):
    return [{"role": "user", "content": text}]


def chat_tool():
    return [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]


# --- tool calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("model", "provider"), CHAT_MODELS)
def test_chat_tool_call_is_billed_exactly(
    app, live_server, fakes, customer, model, provider, stream
):
    key, account_id = customer
    answer = chat(
        live_server,
        key,
        model,
        user("What is the weather in Paris? [[fake:tool chunks=4]]"),
        stream=stream,
        tools=chat_tool(),
        tool_choice="auto",
    )
    assert answer.finish == "tool_calls"
    [(name, arguments)] = answer.tool_calls
    assert name == "get_weather" and json.loads(arguments) == WEATHER_ARGS
    call = only_call(fakes, provider)
    record = settled_record(app, account_id, START_NANOS)
    cost = assert_billed_exactly(app, record, call, "chat")
    assert answer.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(
    ("model", "provider"),
    [pytest.param("gpt-5-mini", "openai", id="openai"), pytest.param("grok-4", "xai", id="xai")],
)
def test_responses_function_call_is_billed_exactly(
    app, live_server, fakes, customer, model, provider, stream
):
    key, account_id = customer
    answer = responses(
        live_server,
        key,
        model,
        "Weather in Paris? [[fake:tool reasoning=3]]",
        stream=stream,
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}],
    )
    [(name, arguments)] = answer.tool_calls
    assert name == "get_weather" and json.loads(arguments) == WEATHER_ARGS
    call = only_call(fakes, provider)
    record = settled_record(app, account_id, START_NANOS)
    cost = assert_billed_exactly(app, record, call, "responses")
    assert answer.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize("stream", STREAMS)
def test_anthropic_tool_use_is_billed_exactly(app, live_server, fakes, customer, stream):
    key, account_id = customer
    answer = messages(
        live_server,
        key,
        "claude-sonnet-4-5",
        user("Weather in Paris? [[fake:tool cached=3 cache_write=2]]"),
        stream=stream,
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}],
    )
    assert answer.finish == "tool_use"
    [(name, arguments)] = answer.tool_calls
    assert name == "get_weather"
    assert (json.loads(arguments) if stream else arguments) == WEATHER_ARGS
    call = only_call(fakes, "anthropic")
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, call, "messages")


def gemini_tool():
    return [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="get_weather",
                    description="Weather for a city",
                    parameters_json_schema=WEATHER_SCHEMA,
                )
            ]
        )
    ]


@pytest.mark.parametrize("stream", STREAMS)
def test_gemini_function_call_is_billed_exactly(app, live_server, fakes, customer, stream):
    key, account_id = customer
    answer = generate(
        live_server,
        key,
        "gemini-2.5-flash",
        "Weather in Paris? [[fake:tool tooluse=6 reasoning=4]]",
        stream=stream,
        tools=gemini_tool(),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    assert answer.tool_calls == [("get_weather", WEATHER_ARGS)]
    call = only_call(fakes, "gemini")
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, call, "gemini")
    assert record.input_tokens == call.usage_reported["promptTokenCount"] + 6


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("model", "provider"), CHAT_MODELS)
def test_chat_image_data_url_is_billed_exactly(
    app, live_server, fakes, customer, model, provider, stream
):
    key, account_id = customer
    content = [
        {"type": "text", "text": "What is in this picture? [[fake:cached=2]]"},
        {"type": "image_url", "image_url": {"url": DATA_URL}},
    ]
    answer = chat(live_server, key, model, [{"role": "user", "content": content}], stream=stream)
    assert answer.text == f"Hello from {provider}"
    call = only_call(fakes, provider)
    assert base64.b64encode(PNG).decode() in json.dumps(call.body)  # the image went upstream
    record = settled_record(app, account_id, START_NANOS)
    cost = assert_billed_exactly(app, record, call, "chat")
    assert answer.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize("stream", STREAMS)
def test_native_anthropic_image_is_billed_exactly(app, live_server, fakes, customer, stream):
    key, account_id = customer
    image = {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    text = {"type": "text", "text": "Describe it [[fake:cache_write_1h=3]]"}
    answer = messages(
        live_server,
        key,
        "claude-haiku-4-5",
        [{"role": "user", "content": [image, text]}],
        stream=stream,
    )
    assert answer.text == "Hello from anthropic"
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, only_call(fakes, "anthropic"), "messages")
    assert record.cache_write_1h_tokens == 3


@pytest.mark.parametrize("stream", STREAMS)
def test_native_gemini_inline_image_is_billed_exactly(app, live_server, fakes, customer, stream):
    key, account_id = customer
    contents = [
        types.Part.from_bytes(data=PNG, mime_type="image/png"),
        "Describe it [[fake:reasoning=2]]",
    ]
    answer = generate(live_server, key, "gemini-2.5-flash", contents, stream=stream)
    assert answer.text == "Hello from gemini"
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, only_call(fakes, "gemini"), "gemini")


# --- no usage in the answer: estimated ------------------------------------------------------------

NOUSAGE_PROMPT = "Tell me something please [[fake:nousage chunks=5]]"


def run_text(route, model, server, key, prompt, stream) -> str:
    if route == "chat":
        return chat(server, key, model, user(prompt), stream=stream).text
    if route == "responses":
        return responses(server, key, model, prompt, stream=stream).text
    if route == "messages":
        return messages(server, key, model, user(prompt), stream=stream).text
    return generate(server, key, model, prompt, stream=stream).text


ROUTES = [
    pytest.param("chat", "gpt-4o-mini", "openai", id="chat-openai"),
    pytest.param("chat", "grok-3-mini", "xai", id="chat-xai"),
    pytest.param("chat", "claude-haiku-4-5", "anthropic", id="chat-anthropic"),
    pytest.param("chat", "gemini-2.5-flash", "gemini", id="chat-gemini"),
    pytest.param("responses", "gpt-5-mini", "openai", id="responses-openai"),
    pytest.param("responses", "grok-3-mini", "xai", id="responses-xai"),
    pytest.param("messages", "claude-haiku-4-5", "anthropic", id="messages"),
    pytest.param("gemini", "gemini-2.5-flash", "gemini", id="gemini"),
]


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("route", "model", "provider"), ROUTES)
def test_answer_without_usage_is_estimated_from_the_bytes_delivered(
    app, live_server, fakes, customer, route, model, provider, stream
):
    key, account_id = customer
    text = run_text(route, model, live_server, key, NOUSAGE_PROMPT, stream)
    assert text == f"Hello from {provider} chunk3 chunk4"
    call = only_call(fakes, provider)
    assert call.completed and call.usage_reported is None
    record = settled_record(app, account_id, START_NANOS)
    assert_estimated(app, record, text, NOUSAGE_PROMPT)


@pytest.mark.parametrize(
    ("route", "model", "provider", "stream"),
    [
        pytest.param("chat", "gpt-4o-mini", "openai", False, id="chat-openai-whole"),
        pytest.param("chat", "gpt-4o-mini", "openai", True, id="chat-openai-stream"),
        pytest.param("chat", "grok-3-mini", "xai", False, id="chat-xai-whole"),
        pytest.param("chat", "claude-haiku-4-5", "anthropic", False, id="chat-anthropic-whole"),
        pytest.param("chat", "claude-haiku-4-5", "anthropic", True, id="chat-anthropic-stream"),
        pytest.param("chat", "gemini-2.5-flash", "gemini", False, id="chat-gemini-whole"),
        pytest.param("chat", "gemini-2.5-flash", "gemini", True, id="chat-gemini-stream"),
        pytest.param(
            "responses",
            "gpt-5-mini",
            "openai",
            False,
            id="responses-whole",
        ),
        pytest.param("responses", "gpt-5-mini", "openai", True, id="responses-stream"),
        pytest.param(
            "messages",
            "claude-haiku-4-5",
            "anthropic",
            False,
            id="messages-whole",
        ),
        pytest.param("messages", "claude-haiku-4-5", "anthropic", True, id="messages-stream"),
        pytest.param("gemini", "gemini-2.5-flash", "gemini", False, id="gemini-whole"),
        pytest.param("gemini", "gemini-2.5-flash", "gemini", True, id="gemini-stream"),
    ],
)
def test_tool_call_without_usage_is_estimated_from_the_arguments_delivered(
    app, live_server, fakes, customer, route, model, provider, stream
):
    key, account_id = customer
    prompt = "Weather in Paris? [[fake:tool nousage]]"
    if route == "chat":
        answer = chat(live_server, key, model, user(prompt), stream=stream, tools=chat_tool())
    elif route == "responses":
        answer = responses(
            live_server,
            key,
            model,
            prompt,
            stream=stream,
            tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}],
        )
    elif route == "messages":
        tool = {"name": "get_weather", "input_schema": WEATHER_SCHEMA}
        answer = messages(live_server, key, model, user(prompt), stream=stream, tools=[tool])
    else:
        answer = generate(
            live_server,
            key,
            model,
            prompt,
            stream=stream,
            tools=gemini_tool(),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
    [(_, arguments)] = answer.tool_calls
    call = only_call(fakes, provider)
    assert call.completed and call.usage_reported is None
    record = settled_record(app, account_id, START_NANOS)
    if isinstance(arguments, str):
        assert_estimated(app, record, arguments, prompt)
    else:
        # Native answers carry the arguments as a JSON object: at least its compact bytes were
        # delivered.
        compact = json.dumps(arguments, separators=(",", ":"))
        assert record.status == "estimated", record.status
        assert record.output_tokens >= ceil_quarter(compact)
        assert record.cost_nanocredits > 0


# --- Anthropic prompt caching --------------------------------------------------------------------

CACHE_PROMPT = "Long shared context [[fake:cached=900 cache_write=300 cache_write_1h=120]]"


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("route", ["chat", "messages"])
def test_anthropic_cache_reads_and_both_cache_writes(
    app, live_server, fakes, customer, route, stream
):
    key, account_id = customer
    model = "claude-opus-4-1"  # 5-minute and 1-hour writes priced apart from input
    if route == "chat":
        answer = chat(live_server, key, model, user(CACHE_PROMPT), stream=stream)
    else:
        answer = messages(live_server, key, model, user(CACHE_PROMPT), stream=stream)
    assert answer.text == "Hello from anthropic"
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, only_call(fakes, "anthropic"), route)
    assert (
        record.cache_read_tokens,
        record.cache_write_5m_tokens,
        record.cache_write_1h_tokens,
    ) == (
        900,
        300,
        120,
    )


# --- Gemini thinking and tool-use prompt tokens -----------------------------------------------------

GEMINI_PROMPT = "Think about it [[fake:reasoning=37 tooluse=23 cached=5 chunks=4]]"


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("route", ["chat", "gemini-v1", "gemini-v1beta"])
def test_gemini_thoughts_bill_as_output_and_tool_use_prompt_as_input(
    app, live_server, fakes, customer, route, stream
):
    key, account_id = customer
    if route == "chat":
        text = chat(live_server, key, "gemini-2.5-pro", user(GEMINI_PROMPT), stream=stream).text
    else:
        version = route.split("-")[1]
        text = generate(
            live_server, key, "gemini-2.5-pro", GEMINI_PROMPT, stream=stream, api_version=version
        ).text
    assert text == "Hello from gemini chunk3"
    call = only_call(fakes, "gemini")
    usage = call.usage_reported
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, call, "gemini")
    assert record.output_tokens == usage["candidatesTokenCount"] + 37
    assert record.input_tokens == usage["promptTokenCount"] - 5 + 23
    assert record.reasoning_tokens == 37


def test_gemini_json_array_stream_bills_the_last_counts(app, live_server, fakes, customer):
    """streamGenerateContent without alt=sse (a JSON array, no SDK speaks it): cumulative counts,
    some chunks without any; the last one's totals are billed, never a sum."""
    import requests

    key, account_id = customer
    response = requests.post(
        f"{live_server.url}/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": GEMINI_PROMPT}]}]},
        timeout=30,
    )
    assert response.status_code == 200
    chunks = response.json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "Hello from gemini chunk3"
    )
    assert sum("usageMetadata" in c for c in chunks) < len(chunks)
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, only_call(fakes, "gemini"), "gemini")
    assert record.output_tokens == chunks[-1]["usageMetadata"]["candidatesTokenCount"] + 37


# --- xAI reasoning beside completion_tokens --------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("model", ["grok-4", "grok-3-mini"])
def test_xai_reasoning_tokens_outside_completion_bill_as_output(
    app, live_server, fakes, customer, model, stream
):
    key, account_id = customer
    answer = chat(
        live_server, key, model, user("Reason [[fake:reasoning=41 cached=6]]"), stream=stream
    )
    assert answer.text == "Hello from xai"
    call = only_call(fakes, "xai")
    usage = call.usage_reported
    assert usage["completion_tokens"] == 6  # reasoning not inside it
    record = settled_record(app, account_id, START_NANOS)
    cost = assert_billed_exactly(app, record, call, "chat")
    assert record.output_tokens == 6 + 41
    assert record.reasoning_tokens == 41
    assert answer.cost == pytest.approx(cost / 1e9)


# --- long-context tiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "tier"),
    [pytest.param(199_990, 0, id="at-threshold"), pytest.param(199_991, 200_000, id="above")],
)
@pytest.mark.parametrize("stream", STREAMS)
def test_gemini_pro_long_prompt_bills_at_the_tier_it_reaches(
    app, live_server, fakes, customer, words, tier, stream
):
    """A real prompt of 10 + `words` tokens (the fake counts words): exactly 200,000 stays at the
    base prices, 200,001 bills the whole request at the long-context prices."""
    key, account_id = customer
    prompt = "w " * words
    answer = generate(live_server, key, "gemini-2.5-pro", prompt, stream=stream)
    assert answer.text == "Hello from gemini"
    call = only_call(fakes, "gemini")
    assert call.usage_reported["promptTokenCount"] == 10 + words
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, call, "gemini")
    assert record.prices_applied["tier"] == tier


@pytest.mark.parametrize(
    ("route", "model", "provider", "directive", "tier"),
    [
        pytest.param(
            "messages",
            "claude-sonnet-4-5",
            "anthropic",
            "cached=150000 cache_write=60000",
            200_000,
            id="anthropic-native-cache-over",
        ),
        pytest.param(
            "chat",
            "claude-sonnet-4-5",
            "anthropic",
            "cached=199980",
            0,
            id="anthropic-chat-just-under",
        ),
        pytest.param(
            "chat",
            "claude-sonnet-4-5",
            "anthropic",
            "cache_write_1h=200000",
            200_000,
            id="anthropic-chat-1h-write-over",
        ),
        pytest.param(
            "chat",
            "gemini-2.5-pro",
            "gemini",
            "cached=250000 reasoning=10",
            200_000,
            id="gemini-chat-cached-over",
        ),
        pytest.param("chat", "grok-4", "xai", "cached=130000 reasoning=9", 128_000, id="grok-chat"),
        pytest.param("responses", "grok-4", "xai", "cached=128000", 128_000, id="grok-responses"),
    ],
)
@pytest.mark.parametrize("stream", STREAMS)
def test_long_context_tier_reached_through_cached_prompt_tokens(
    app, live_server, fakes, customer, route, model, provider, directive, tier, stream
):
    """The prompt's cached and cache-written tokens count toward the tier, and the whole request
    (cache classes included) bills at the tier's prices."""
    key, account_id = customer
    prompt = f"Summarise the shared context [[fake:{directive}]]"
    kind = {"chat": "chat", "responses": "responses"}.get(route, route)
    text = run_text(route, model, live_server, key, prompt, stream)
    assert text == f"Hello from {provider}"
    record = settled_record(app, account_id, START_NANOS)
    assert_billed_exactly(app, record, only_call(fakes, provider), kind)
    assert record.prices_applied["tier"] == tier
