"""The fake upstreams, checked with the official SDKs pointed straight at them (no app, no DB)."""

from __future__ import annotations

import json
import time

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes import DEFAULT_KEYS, DirectiveError, FakeUpstreams, parse_directives

WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
WEATHER_ARGS = {"city": "fake", "days": 1}


@pytest.fixture(scope="module")
def fakes():
    with FakeUpstreams() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_log(fakes):
    fakes.reset()


# SDK clients are built once per (server, options): each build loads TLS certificates, which
# would cost more than the requests themselves.
_CLIENTS: dict[tuple, object] = {}


def _cached(key, build):
    if key not in _CLIENTS:
        _CLIENTS[key] = build()
    return _CLIENTS[key]


def openai_client(fakes, provider="openai", **kwargs):
    kwargs.setdefault("max_retries", 0)
    return _cached(
        (fakes.port, provider, tuple(sorted(kwargs.items()))),
        lambda: openai.OpenAI(
            base_url=fakes.base_urls[provider], api_key=fakes.keys[provider], **kwargs
        ),
    )


def anthropic_client(fakes, **kwargs):
    kwargs.setdefault("max_retries", 0)
    return _cached(
        (fakes.port, "anthropic", tuple(sorted(kwargs.items()))),
        lambda: anthropic.Anthropic(
            base_url=fakes.base_urls["anthropic"], api_key=fakes.keys["anthropic"], **kwargs
        ),
    )


def gemini_client(fakes, api_version="v1beta", api_key=None):
    # Keep the Client referenced while using it: google-genai closes its HTTP client when the
    # Client object is garbage-collected, even if `client.models` is still in use.
    return _cached(
        (fakes.port, "gemini", api_version, api_key),
        lambda: genai.Client(
            api_key=api_key or fakes.keys["gemini"],
            http_options=genai_types.HttpOptions(
                base_url=fakes.base_urls["gemini"], api_version=api_version
            ),
        ),
    )


def user(text):
    return [{"role": "user", "content": text}]


def only_call(fakes, provider=None):
    (call,) = fakes.wait_for_calls(1, provider=provider)
    return call


# ---------------------------------------------------------------------------------------------
# The fakes' own machinery


def test_directives_parse():
    d = parse_directives('{"x": "hi [[fake:error=429]] and [[fake:slow=5, chunks=4 tool]]"}')
    assert (d.error, d.slow_ms, d.chunks, d.tool, d.hang) == (429, 5, 4, True, False)
    with pytest.raises(DirectiveError):
        parse_directives("[[fake:explode]]")


def test_unknown_directive_is_a_400(fakes):
    with pytest.raises(openai.BadRequestError, match="unknown fake directive"):
        openai_client(fakes).chat.completions.create(model="m", messages=user("[[fake:bogus]]"))


def test_base_urls_and_env(fakes):
    port = fakes.port
    assert fakes.base_urls == {
        "openai": f"http://127.0.0.1:{port}/openai/v1",
        "xai": f"http://127.0.0.1:{port}/xai/v1",
        "anthropic": f"http://127.0.0.1:{port}/anthropic",
        "gemini": f"http://127.0.0.1:{port}/gemini",
    }
    assert fakes.env()["ANTHROPIC_API_KEY"] == DEFAULT_KEYS["anthropic"]


# ---------------------------------------------------------------------------------------------
# OpenAI Chat Completions


def test_openai_chat_non_stream(fakes):
    answer = openai_client(fakes).chat.completions.create(
        model="gpt-4o-mini", messages=user("one two three [[fake:reasoning=4 cached=5]]")
    )
    assert answer.model == "gpt-4o-mini"
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "Hello from openai"
    assert answer.choices[0].finish_reason == "stop"
    usage = answer.usage
    # prompt = 10 + 5 words (a directive's words count too), plus the cached 5 inside; reasoning inside completion
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 10, 30)
    assert usage.prompt_tokens_details.cached_tokens == 5
    assert usage.completion_tokens_details.reasoning_tokens == 4
    call = only_call(fakes)
    assert call.path == "/openai/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-upstream-openai"
    assert call.body["model"] == "gpt-4o-mini"
    assert call.usage_reported == answer.usage.model_dump(exclude_none=True)
    assert (call.status, call.stream, call.completed, call.chunks_sent) == (200, False, True, 3)


def test_openai_chat_stream_with_usage(fakes):
    stream = openai_client(fakes).chat.completions.create(
        model="gpt-4o",
        messages=user("hi [[fake:chunks=5]]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from openai chunk3 chunk4"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    call = only_call(fakes)
    assert call.usage_reported == chunks[-1].usage.model_dump(exclude_none=True)
    assert call.usage_reported["prompt_tokens"] == 12
    assert (call.stream, call.completed, call.chunks_sent) == (True, True, 5)


def test_openai_chat_stream_wire_without_usage(fakes):
    body = {"model": "gpt-4o", "messages": user("hi"), "stream": True}
    response = httpx2.post(
        fakes.base_urls["openai"] + "/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-upstream-openai"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert only_call(fakes).usage_reported is None


def test_openai_stream_nousage(fakes):
    stream = openai_client(fakes).chat.completions.create(
        model="gpt-4o",
        messages=user("hi [[fake:nousage]]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    assert all(c.choices for c in stream)
    call = only_call(fakes)
    assert call.completed and call.usage_reported is None


def test_openai_output_limit_cuts_the_answer(fakes):
    answer = openai_client(fakes).chat.completions.create(
        model="gpt-4o", messages=user("hi"), max_completion_tokens=4
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 4
    assert answer.choices[0].message.content == "Hello from openai"[: len("Hello from")]


def test_openai_tool_call_stream_and_whole(fakes):
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA},
        }
    ]
    client = openai_client(fakes)
    whole = client.chat.completions.create(
        model="gpt-4o", messages=user("weather? [[fake:tool]]"), tools=tools
    )
    assert whole.choices[0].finish_reason == "tool_calls"
    (tool_call,) = whole.choices[0].message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == WEATHER_ARGS

    arguments, names, finish = "", [], None
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=user("weather? [[fake:tool]]"), tools=tools, stream=True
    ):
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            arguments += delta_call.function.arguments or ""
            names += [delta_call.function.name] if delta_call.function.name else []
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    assert json.loads(arguments) == WEATHER_ARGS


# ---------------------------------------------------------------------------------------------
# xAI (openai SDK)


def test_xai_usage_keeps_reasoning_outside_completion(fakes):
    client = openai_client(fakes, "xai")
    answer = client.chat.completions.create(
        model="grok-4", messages=user("hello [[fake:reasoning=7]]")
    )
    assert answer.choices[0].message.content == "Hello from xai"
    usage = answer.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 6, 25)
    assert usage.completion_tokens_details.reasoning_tokens == 7

    stream = client.chat.completions.create(
        model="grok-4",
        messages=user("hello"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from xai"
    )
    assert chunks[-1].usage.total_tokens == 17
    assert fakes.last_call("xai").path == "/xai/v1/chat/completions"


# ---------------------------------------------------------------------------------------------
# OpenAI Responses API


def test_responses_stream(fakes):
    stream = openai_client(fakes).responses.create(
        model="gpt-4.1", input="say something [[fake:reasoning=3]]", stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from openai"
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (13, 9, 22)
    assert usage.output_tokens_details.reasoning_tokens == 3
    call = only_call(fakes)
    assert call.usage_reported == usage.model_dump(exclude_none=True)
    raw = httpx2.post(
        fakes.base_urls["openai"] + "/responses",
        json={"model": "gpt-4.1", "input": "x", "stream": True},
        headers={"Authorization": "Bearer sk-upstream-openai"},
    ).text
    assert raw.startswith("event: response.created\ndata: {")


def test_responses_whole_and_tool(fakes):
    client = openai_client(fakes)
    answer = client.responses.create(model="gpt-4.1", input=[{"role": "user", "content": "hi"}])
    assert answer.output_text == "Hello from openai"
    assert answer.usage.input_tokens == 11
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL_SCHEMA}
    stream = client.responses.create(
        model="gpt-4.1", input="weather [[fake:tool]]", tools=[tool], stream=True
    )
    done = [e for e in stream if e.type == "response.output_item.done"]
    assert done[0].item.type == "function_call"
    assert json.loads(done[0].item.arguments) == WEATHER_ARGS


# ---------------------------------------------------------------------------------------------
# Anthropic


def test_anthropic_non_stream(fakes):
    message = anthropic_client(fakes).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="be brief",
        messages=user("one two [[fake:cached=30 cache_write=8 reasoning=2]]"),
    )
    assert message.content[0].text == "Hello from anthropic"
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert usage.input_tokens == 17  # 10 + 7 words; cache reads/writes are separate
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (30, 8)
    assert usage.output_tokens == 8  # thinking inside output
    call = only_call(fakes)
    assert call.headers["authorization"] == "Bearer sk-upstream-anthropic"
    assert "anthropic-version" in call.headers
    assert call.usage_reported["output_tokens"] == 8


def test_anthropic_stream_events_and_usage(fakes):
    client = anthropic_client(fakes)
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=user("hi [[fake:chunks=4]]")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from anthropic chunk3"
    assert final.usage.output_tokens == 8  # message_delta replaces message_start's 1
    call = only_call(fakes)
    assert call.usage_reported == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 8,
    }
    raw = httpx2.post(
        fakes.base_urls["anthropic"] + "/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": user("x"), "stream": True},
        headers={"x-api-key": "sk-upstream-anthropic", "anthropic-version": "2023-06-01"},
    ).text
    blocks = [b for b in raw.split("\n\n") if b]
    assert all(b.startswith("event: ") for b in blocks)
    names = [b.split("\n", 1)[0].removeprefix("event: ") for b in blocks]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_tool_use_and_count_tokens(fakes):
    client = anthropic_client(fakes)
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL_SCHEMA}
    with client.messages.stream(
        model="claude-x", max_tokens=100, messages=user("w [[fake:tool]]"), tools=[tool]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == WEATHER_ARGS
    counted = client.messages.count_tokens(model="claude-x", messages=user("a b c"))
    assert counted.input_tokens == 13


def test_anthropic_requires_max_tokens(fakes):
    response = httpx2.post(
        fakes.base_urls["anthropic"] + "/v1/messages",
        json={"model": "c", "messages": user("x")},
        headers={"x-api-key": "sk-upstream-anthropic"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------------------------
# Gemini


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_gemini_non_stream(fakes, version):
    client = gemini_client(fakes, version)
    answer = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="one two [[fake:reasoning=6 cached=4 tooluse=3]]",
    )
    assert answer.text == "Hello from gemini"
    usage = answer.usage_metadata
    assert usage.prompt_token_count == 19  # 10 + 5 words + 4 cached
    assert usage.cached_content_token_count == 4
    assert usage.candidates_token_count == 6  # thoughts are not inside candidates
    assert usage.thoughts_token_count == 6
    assert usage.tool_use_prompt_token_count == 3
    assert usage.total_token_count == 19 + 6 + 6 + 3
    call = only_call(fakes)
    assert call.path == f"/gemini/{version}/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == DEFAULT_KEYS["gemini"]
    assert call.usage_reported["totalTokenCount"] == 34


def test_gemini_stream_sse(fakes):
    client = gemini_client(fakes)
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi [[fake:chunks=4]]"
        )
    )
    assert "".join(c.text for c in chunks) == "Hello from gemini chunk3"
    counts = [c.usage_metadata.candidates_token_count if c.usage_metadata else None for c in chunks]
    assert counts == [2, None, 6, 8]
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    call = only_call(fakes)
    assert call.query == {"alt": "sse"}
    assert call.usage_reported["candidatesTokenCount"] == 8


def test_gemini_stream_json_array_and_key_param(fakes):
    response = httpx2.post(
        fakes.base_urls["gemini"] + "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        params={"key": DEFAULT_KEYS["gemini"]},
        json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}]},
    )
    items = response.json()
    assert isinstance(items, list) and len(items) == 3
    assert items[-1]["usageMetadata"]["totalTokenCount"] == 18


def test_gemini_function_call(fakes):
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(name="get_weather", parameters=WEATHER_TOOL_SCHEMA)
        ]
    )
    client = gemini_client(fakes)
    answer = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="weather [[fake:tool]]",
        config=genai_types.GenerateContentConfig(tools=[tool]),
    )
    (function_call,) = answer.function_calls
    assert function_call.name == "get_weather" and function_call.args == WEATHER_ARGS


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_error_statuses(fakes, status, exception):
    with pytest.raises(exception) as info:
        openai_client(fakes).chat.completions.create(
            model="m", messages=user(f"x [[fake:error={status}]]")
        )
    assert info.value.status_code == status
    assert set(info.value.body) == {"message", "type", "param", "code"}
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


def test_xai_error_body_shape(fakes):
    with pytest.raises(openai.RateLimitError) as info:
        openai_client(fakes, "xai").chat.completions.create(
            model="grok-4", messages=user("x [[fake:error=429]]")
        )
    body = info.value.response.json()
    assert set(body) == {"code", "error"}
    assert info.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("status", "exception", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (402, anthropic.PaymentRequiredError, "billing_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_error_statuses(fakes, status, exception, kind):
    with pytest.raises(exception) as info:
        anthropic_client(fakes).messages.create(
            model="c", max_tokens=10, messages=user(f"x [[fake:error={status}]]")
        )
    assert info.value.status_code == status
    assert info.value.type == kind


@pytest.mark.parametrize(
    ("status", "exception", "grpc_status"),
    [
        (400, genai_errors.ClientError, "INVALID_ARGUMENT"),
        (403, genai_errors.ClientError, "PERMISSION_DENIED"),
        (404, genai_errors.ClientError, "NOT_FOUND"),
        (429, genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, genai_errors.ServerError, "INTERNAL"),
        (503, genai_errors.ServerError, "UNAVAILABLE"),
    ],
)
def test_gemini_error_statuses(fakes, status, exception, grpc_status):
    client = gemini_client(fakes)
    with pytest.raises(exception) as info:
        client.models.generate_content(
            model="gemini-2.5-flash", contents=f"x [[fake:error={status}]]"
        )
    assert (info.value.code, info.value.status) == (status, grpc_status)


def test_wrong_keys_are_refused(fakes):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=fakes.base_urls["openai"], api_key="sk-wrong", max_retries=0
        ).chat.completions.create(model="m", messages=user("x"))
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=fakes.base_urls["xai"], api_key="sk-upstream-openai", max_retries=0
        ).chat.completions.create(model="m", messages=user("x"))
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=fakes.base_urls["anthropic"], api_key="nope", max_retries=0
        ).messages.create(model="c", max_tokens=5, messages=user("x"))
    client = gemini_client(fakes, api_key="nope")
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model="g", contents="x")
    assert info.value.code == 401
    assert [c.status for c in fakes.wait_for_calls(4)] == [401, 401, 401, 401]


# ---------------------------------------------------------------------------------------------
# Broken streams


def test_drop_mid_stream_raises_in_each_sdk(fakes):
    with pytest.raises(openai.APIConnectionError):
        for _ in openai_client(fakes).chat.completions.create(
            model="m",
            messages=user("x [[fake:drop=2]]"),
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
    call = only_call(fakes, "openai")
    assert (call.completed, call.chunks_sent, call.usage_reported) == (False, 2, None)

    events = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the anthropic SDK does not wrap it
        for event in anthropic_client(fakes).messages.create(
            model="c", max_tokens=50, messages=user("x [[fake:drop=1]]"), stream=True
        ):
            events.append(event.type)
    assert events == ["message_start", "content_block_start", "content_block_delta"]
    call = only_call(fakes, "anthropic")
    assert (call.completed, call.chunks_sent) == (False, 1)
    assert call.usage_reported["input_tokens"] == 12  # message_start's usage is known

    client = gemini_client(fakes)
    with pytest.raises(httpx2.RemoteProtocolError):
        for _ in client.models.generate_content_stream(model="g", contents="x [[fake:drop=2]]"):
            pass
    call = only_call(fakes, "gemini")
    assert (call.completed, call.chunks_sent) == (False, 2)
    assert call.usage_reported["candidatesTokenCount"] == 2  # chunk 1 carried no counts


def test_midstream_errors(fakes):
    with pytest.raises(openai.APIError, match="server had an error"):
        for _ in openai_client(fakes).chat.completions.create(
            model="m", messages=user("x [[fake:midstream_error]]"), stream=True
        ):
            pass
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        for _ in anthropic_client(fakes).messages.create(
            model="c", max_tokens=50, messages=user("x [[fake:midstream_error]]"), stream=True
        ):
            pass
    client = gemini_client(fakes)
    with pytest.raises(genai_errors.ServerError):
        for _ in client.models.generate_content_stream(
            model="g", contents="x [[fake:midstream_error]]"
        ):
            pass
    calls = fakes.wait_for_calls(3)
    assert [c.chunks_sent for c in calls] == [2, 2, 2]


def test_hang_ends_when_the_client_gives_up(fakes):
    client = openai_client(fakes, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=user("x [[fake:hang]]"))
    call = only_call(fakes)
    assert time.monotonic() - started < 5
    assert (call.status, call.completed) == (0, False)


def test_client_disconnect_is_recorded(fakes):
    stream = openai_client(fakes).chat.completions.create(
        model="m", messages=user("x [[fake:slow=150 chunks=8]]"), stream=True
    )
    iterator = iter(stream)
    next(iterator)
    next(iterator)
    stream.close()
    call = only_call(fakes)
    assert not call.completed
    assert 1 <= call.chunks_sent < 8


def test_gemini_long_after_disconnect(fakes):
    client = gemini_client(fakes)
    chunks = list(
        client.models.generate_content_stream(
            model="g", contents="x [[fake:long_after_disconnect slow=10]]"
        )
    )
    assert len(chunks) == 13
    call = only_call(fakes)
    assert call.completed and call.usage_reported["candidatesTokenCount"] == 26

    fakes.reset()
    stream = client.models.generate_content_stream(
        model="g", contents="x [[fake:long_after_disconnect]]"
    )
    next(iter(stream))
    stream.close()
    call = only_call(fakes)
    assert not call.completed and call.chunks_sent < 13


def test_custom_keys_and_realistic_auth_errors():
    with FakeUpstreams(keys={"xai": "xai-custom"}, realistic_auth_errors=True) as other:
        assert other.keys["openai"] == DEFAULT_KEYS["openai"]
        ok = httpx2.post(
            other.base_urls["xai"] + "/chat/completions",
            json={"model": "grok-4", "messages": user("hi")},
            headers={"Authorization": "Bearer xai-custom"},
        )
        assert ok.json()["choices"][0]["message"]["content"] == "Hello from xai"
        wrong = httpx2.post(
            other.base_urls["xai"] + "/chat/completions",
            json={"model": "grok-4", "messages": user("hi")},
            headers={"Authorization": "Bearer sk-upstream-xai"},
        )
        assert wrong.status_code == 400 and set(wrong.json()) == {"code", "error"}
        wrong = httpx2.post(
            other.base_urls["gemini"] + "/v1beta/models/g:generateContent",
            json={"contents": [{"parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": "nope"},
        )
        assert wrong.status_code == 400
        assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
