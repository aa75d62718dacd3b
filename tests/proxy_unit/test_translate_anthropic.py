"""OpenAI Chat Completions <-> Anthropic Messages: requests, answers, streams, usage and cost."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from app.proxy.errors import ProxyError
from app.proxy.sse import Event
from app.proxy.translate_anthropic import ChatToMessages
from tests.proxy_unit.wire import (
    TEXT_BLOB,
    chunks,
    completion,
    payloads,
    run,
    sdk_final,
    sdk_stream,
)

USER = {"role": "user", "content": "Hello"}


def translate(model, **body) -> dict:
    body.setdefault("messages", [USER])
    translator = ChatToMessages({"model": "claude-sonnet-4-5", **body}, model)
    translator.validate()
    call = translator.upstream_call(output_limit=512, opaque_user="onekey-abc")
    return call.body


def refused(model, **body) -> ProxyError:
    body.setdefault("messages", [USER])
    with pytest.raises(ProxyError) as caught:
        ChatToMessages({"model": "claude-sonnet-4-5", **body}, model).validate()
    assert caught.value.condition == "invalid_request"
    assert caught.value.status == 400
    return caught.value


# --- requests -----------------------------------------------------------------------------------


def test_upstream_call_shape(claude):
    translator = ChatToMessages(
        {"model": "anthropic/claude-sonnet-4-5", "messages": [USER], "stream": True}, claude
    )
    translator.validate()
    call = translator.upstream_call(output_limit=777, opaque_user="onekey-123")
    assert call.provider == "anthropic"
    assert call.path == "/v1/messages"
    assert call.stream is True
    assert call.body["model"] == "claude-sonnet-4-5"
    assert call.body["max_tokens"] == 777
    assert call.body["metadata"] == {"user_id": "onekey-123"}
    assert call.body["stream"] is True
    assert call.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]
    assert "system" not in call.body


def test_non_stream_call(claude):
    translator = ChatToMessages({"model": "m", "messages": [USER]}, claude)
    call = translator.upstream_call(output_limit=10, opaque_user="u")  # validates on its own
    assert call.stream is False
    assert call.body["stream"] is False


def test_system_and_developer_become_top_level_system(claude):
    body = translate(
        claude,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            USER,
        ],
    )
    assert body["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_multi_turn_and_merging_of_same_role_messages(claude):
    body = translate(
        claude,
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},  # empty: dropped
            {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
            {"role": "user", "content": "five"},
        ],
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_image_parts(claude):
    body = translate(
        claude,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": TEXT_BLOB, "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "part, param",
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
            "messages[0].content[0].image_url.url",
        ),
        ({"type": "image_url", "image_url": {}}, "messages[0].content[0].image_url"),
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            "messages[0].content[0]",
        ),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0].file.file_id"),
        (
            {"type": "file", "file": {"file_data": "data:application/zip;base64,UEs="}},
            "messages[0].content[0].file",
        ),
        ({"type": "video", "video": {}}, "messages[0].content[0]"),
        ({"type": "text", "text": 5}, "messages[0].content[0].text"),
    ],
)
def test_unsupported_content_parts(claude, part, param):
    error = refused(claude, messages=[{"role": "user", "content": [part]}])
    assert error.param == param


def test_file_parts(claude):
    text = base64.b64encode(b"plain words").decode()
    body = translate(
        claude,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                    {"type": "file", "file": {"file_data": text, "filename": "notes.txt"}},
                ],
            }
        ],
    )
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
        },
    ]


def test_cache_control_passes_through(claude):
    body = translate(
        claude,
        messages=[
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}
                ],
            },
            USER,
        ],
    )
    assert body["system"] == [
        {"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}
    ]
    error = refused(
        claude,
        messages=[{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": 1}]}],
    )
    assert error.param == "messages[0].content[0].cache_control"


def test_sampling_parameters(claude):
    body = translate(claude, temperature=0.7, top_p=0.9, top_k=40, stop="END")
    assert body["temperature"] == 0.7
    assert body["top_p"] == 0.9
    assert body["top_k"] == 40
    assert body["stop_sequences"] == ["END"]
    assert translate(claude, stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in translate(claude, stop=None)
    assert translate(claude, temperature=1)["temperature"] == 1
    assert translate(claude, temperature=0)["temperature"] == 0


@pytest.mark.parametrize(
    "params, param",
    [
        ({"temperature": 1.2}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"stop": [1, 2]}, "stop"),
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}},
                }
            },
            "response_format",
        ),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1234": 5}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -0.5}, "frequency_penalty"),
        ({"seed": 42}, "seed"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"verbosity": "low"}, "verbosity"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
    ],
)
def test_refusals_name_the_parameter(claude, params, param):
    error = refused(claude, **params)
    assert error.param == param
    assert param.split(".")[0] in error.message


def test_no_op_defaults_are_accepted(claude):
    body = translate(
        claude,
        n=1,
        logprobs=False,
        top_logprobs=0,
        logit_bias={},
        presence_penalty=0,
        frequency_penalty=0.0,
        modalities=["text"],
        reasoning_effort="none",
        response_format={"type": "text"},
        seed=None,
        user="end-user-42",
        metadata={"trace": "1"},
        store=True,
        service_tier="auto",
        prompt_cache_key="k",
        stream_options={"include_usage": True},
    )
    for name in ("n", "logprobs", "user", "store", "service_tier", "seed", "stream_options"):
        assert name not in body
    assert body["metadata"] == {"user_id": "onekey-abc"}  # never the client's own ids


@pytest.mark.parametrize(
    "messages, param",
    [
        ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        (
            [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0]",
        ),
        ([USER, {"role": "tool", "content": "42"}], "messages[1].tool_call_id"),
        (
            [USER, {"role": "assistant", "content": None, "audio": {"id": "a1"}}],
            "messages[1].audio",
        ),
    ],
)
def test_bad_messages(claude, messages, param):
    assert refused(claude, messages=messages).param == param


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def test_tools_and_tool_choice(claude):
    body = translate(claude, tools=[WEATHER, CLOCK])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    choices = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
    }
    for choice, native in choices.items():
        assert translate(claude, tools=[WEATHER], tool_choice=choice)["tool_choice"] == native
    forced = {"type": "function", "function": {"name": "get_weather"}}
    assert translate(claude, tools=[WEATHER], tool_choice=forced)["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
    }


def test_parallel_tool_calls_false(claude):
    body = translate(claude, tools=[WEATHER], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body = translate(claude, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body = translate(claude, tools=[WEATHER], parallel_tool_calls=True)
    assert "tool_choice" not in body


def test_allowed_tools_narrow_the_offer(claude):
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    body = translate(claude, tools=[WEATHER, CLOCK], tool_choice=choice)
    assert [tool["name"] for tool in body["tools"]] == ["get_time"]
    assert body["tool_choice"] == {"type": "any"}


def test_tool_choice_without_tools(claude):
    assert "tool_choice" not in translate(claude, tool_choice="none")
    assert "tool_choice" not in translate(claude, tool_choice="auto")
    assert refused(claude, tool_choice="required").param == "tool_choice"


@pytest.mark.parametrize(
    "params, param",
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": {"a": 1}}, "tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ],
)
def test_bad_tools(claude, params, param):
    assert refused(claude, **params).param == param


def test_tool_call_history(claude):
    body = translate(
        claude,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call.2:x",  # from another provider: mapped to Anthropic's alphabet
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call.2:x",
                "content": [{"type": "text", "text": "21C"}],
            },
            {"role": "user", "content": "Thanks. Which is warmer?"},
        ],
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2_x",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2_x",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks. Which is warmer?"},
            ],
        },
    ]


def test_tool_results_open_the_user_turn(claude):
    body = translate(
        claude,
        messages=[
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ],
            },
            {"role": "user", "content": "also this"},
            {"role": "tool", "tool_call_id": "t1", "content": "done"},
        ],
    )
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    ]
    assert [block["type"] for block in body["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "42"])
def test_bad_tool_call_arguments(claude, arguments):
    messages = [
        USER,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ],
        },
    ]
    assert (
        refused(claude, messages=messages).param == "messages[1].tool_calls[0].function.arguments"
    )


# --- answers ------------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello! How can I help?"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 8},
}


def relay_for(claude, **body):
    body.setdefault("messages", [USER])
    translator = ChatToMessages({"model": "m", **body}, claude)
    translator.validate()
    return translator.relay()


def test_text_answer(claude):
    relay = relay_for(claude)
    body = relay.response_body(json.loads(json.dumps(MESSAGE)))
    parsed = completion(body)
    assert parsed.id == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert parsed.object == "chat.completion"
    assert parsed.model == "claude-sonnet-4-5"
    assert isinstance(body["created"], int)
    choice = parsed.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello! How can I help?"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert body["usage"]["prompt_tokens"] == 12
    assert body["usage"]["completion_tokens"] == 8
    assert body["usage"]["total_tokens"] == 20
    # 12 × 3.30 + 8 × 16.50 credits per million tokens = 171.6 µcredits.
    assert body["usage"]["cost"] == 0.0001716
    assert relay.finished and relay.usage_complete
    assert relay.usage.input == 12 and relay.usage.output == 8
    assert relay.delivered_bytes == len("Hello! How can I help?")


def test_tool_use_answer(claude):
    upstream = {
        **MESSAGE,
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"city": "Zürich"},
            },
        ],
        "stop_reason": "tool_use",
    }
    relay = relay_for(claude, tools=[WEATHER])
    parsed = completion(relay.response_body(upstream))
    message = parsed.choices[0].message
    assert message.content == "Let me check."  # the thinking block is not content
    assert parsed.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls
    assert call.id == "toolu_01A09q90qw90lq917835lq9"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Zürich"}
    assert relay.delivered_bytes == len(b"Let me check.") + len(call.function.arguments.encode())


def test_tool_only_answer_has_null_content(claude):
    upstream = {
        **MESSAGE,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}],
        "stop_reason": "tool_use",
    }
    parsed = completion(relay_for(claude).response_body(upstream))
    assert parsed.choices[0].message.content is None
    assert parsed.choices[0].message.tool_calls[0].function.arguments == "{}"


@pytest.mark.parametrize(
    "stop_reason, finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(claude, stop_reason, finish):
    body = relay_for(claude).response_body({**MESSAGE, "stop_reason": stop_reason})
    assert completion(body).choices[0].finish_reason == finish


def test_usage_with_cache_classes_and_cost(claude):
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
        "output_tokens": 250,
    }
    relay = relay_for(claude)
    body = relay.response_body({**MESSAGE, "usage": usage})
    # 100 × 3.30 + 2000 × 0.33 + 300 × 4.125 + 200 × 6.60 + 250 × 16.50 = 7672.5 µcredits.
    assert body["usage"] == {
        "prompt_tokens": 2600,
        "completion_tokens": 250,
        "total_tokens": 2850,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 500},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": 0.0076725,
    }
    assert relay.usage.cache_write_5m == 300 and relay.usage.cache_write_1h == 200
    assert relay.usage.prompt_tokens == 2600
    completion(body)


def test_answer_without_usage(claude):
    relay = relay_for(claude)
    upstream = {key: value for key, value in MESSAGE.items() if key != "usage"}
    body = relay.response_body(upstream)
    assert "usage" not in body
    assert relay.usage is None and not relay.usage_complete
    assert relay.delivered_bytes > 0  # the gateway estimates from these


@pytest.mark.parametrize("upstream", [[], {"type": "error"}, {"content": "text"}])
def test_malformed_answer_is_a_value_error(claude, upstream):
    with pytest.raises(ValueError):
        relay_for(claude).response_body(upstream)


# --- streams ------------------------------------------------------------------------------------

TEXT_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", wörld"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}

event: message_stop
data: {"type":"message_stop"}

"""

TOOL_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2,"cache_read_input_tokens":1000,"cache_creation_input_tokens":0},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let's check the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisco\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""

THINKING_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_think","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me work this out step by step."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"42"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":300}}

event: message_stop
data: {"type":"message_stop"}

"""

ERROR_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_err","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

"""


def test_text_stream_with_usage(claude):
    relay = relay_for(claude, stream=True, stream_options={"include_usage": True})
    frames = run(relay, TEXT_STREAM)
    parsed = chunks(frames)
    assert len({chunk.id for chunk in parsed}) == 1
    assert parsed[0].id == "chatcmpl-msg_1"
    assert len({chunk.created for chunk in parsed}) == 1
    assert all(chunk.model == "claude-sonnet-4-5" for chunk in parsed)
    assert all(chunk.object == "chat.completion.chunk" for chunk in parsed)
    first = parsed[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content == ""
    assert [c.choices[0].delta.content for c in parsed[1:3]] == ["Hello", ", wörld"]
    finish = parsed[3].choices[0]
    assert finish.finish_reason == "stop"
    assert finish.delta.content is None and finish.delta.role is None
    usage_chunk = parsed[4]
    assert usage_chunk.choices == []
    # message_delta's cumulative 6 output tokens replace message_start's 1 (not 7).
    assert usage_chunk.usage.prompt_tokens == 11
    assert usage_chunk.usage.completion_tokens == 6
    assert usage_chunk.usage.total_tokens == 17
    assert payloads(frames)[4]["usage"]["cost"] == 0.0001353  # 11 × 3.30 + 6 × 16.50 µcredits
    assert len(parsed) == 5
    assert relay.finished and relay.usage_complete
    assert relay.usage.output == 6
    assert relay.delivered_bytes == len("Hello, wörld".encode())


def test_text_stream_without_usage(claude):
    relay = relay_for(claude, stream=True)
    parsed = chunks(run(relay, TEXT_STREAM))
    assert all(
        chunk.choices for chunk in parsed
    )  # no empty-choices chunk the client didn't ask for
    assert parsed[-1].choices[0].finish_reason == "stop"
    assert relay.usage.output == 6  # metered all the same


def test_stream_through_the_official_sdk(claude):
    frames = run(
        relay_for(claude, stream=True, stream_options={"include_usage": True}), TEXT_STREAM
    )
    received = sdk_stream(frames, stream_options={"include_usage": True})
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "Hello, wörld"
    assert received[-1].usage.completion_tokens == 6
    final = sdk_final(run(relay_for(claude, stream=True), TEXT_STREAM))
    assert final.choices[0].message.content == "Hello, wörld"
    assert final.choices[0].finish_reason == "stop"


def test_tool_call_stream(claude):
    relay = relay_for(claude, stream=True, tools=[WEATHER], stream_options={"include_usage": True})
    frames = run(relay, TOOL_STREAM)
    parsed = chunks(frames)
    deltas = [c.choices[0].delta for c in parsed if c.choices]
    starts = [d.tool_calls[0] for d in deltas if d.tool_calls and d.tool_calls[0].id]
    assert [(s.index, s.id, s.type, s.function.name, s.function.arguments) for s in starts] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "function", "get_weather", ""),
        (1, "toolu_02", "function", "get_time", ""),
    ]
    pieces = [d.tool_calls[0] for d in deltas if d.tool_calls and not d.tool_calls[0].id]
    assert all(p.function.name is None for p in pieces)
    assert json.loads("".join(p.function.arguments for p in pieces if p.index == 0)) == {
        "city": "San Francisco"
    }
    assert [c.choices[0].finish_reason for c in parsed if c.choices][-1] == "tool_calls"
    usage = payloads(frames)[-2]["usage"]
    assert usage["prompt_tokens"] == 1472
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1000}
    assert usage["completion_tokens"] == 89
    # 472 × 3.30 + 1000 × 0.33 + 89 × 16.50 = 1557.6 + 330 + 1468.5 = 3356.1 µcredits
    assert usage["cost"] == 0.0033561
    final = sdk_final(run(relay_for(claude, stream=True, tools=[WEATHER]), TOOL_STREAM))
    message = final.choices[0].message
    assert message.content == "Okay, let's check the weather."
    assert [call.function.name for call in message.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "San Francisco"}
    assert message.tool_calls[1].function.arguments == "{}"
    assert final.choices[0].finish_reason == "tool_calls"


def test_thinking_is_not_content_but_is_billed(claude):
    relay = relay_for(claude, stream=True, stream_options={"include_usage": True})
    frames = run(relay, THINKING_STREAM)
    parsed = chunks(frames)
    text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert text == "42"
    assert b"step by step" not in b"".join(frames)
    assert b"EqQBCgIYAhIM" not in b"".join(frames)
    assert relay.usage.output == 300
    assert parsed[-1].usage.completion_tokens == 300
    assert relay.delivered_bytes == 2


def test_error_event_mid_stream(claude):
    relay = relay_for(claude, stream=True, stream_options={"include_usage": True})
    frames = run(relay, ERROR_STREAM)
    data = payloads(frames)
    assert data[-1]["error"]["message"] == "Anthropic: Overloaded"
    assert data[-1]["error"]["code"] == "upstream_error"
    assert "[DONE]" not in data  # not finished: the gateway reports the stream as broken
    assert not relay.finished
    assert not relay.usage_complete
    assert relay.usage.input == 11  # message_start's counts are proof of part of the request
    assert relay.delivered_bytes == len("Partial")
    with pytest.raises(openai.APIError, match="Overloaded"):
        sdk_stream(frames)


@pytest.mark.parametrize(
    "kind, code",
    [
        ("rate_limit_error", "rate_limited"),
        ("api_error", "upstream_error"),
        ("invalid_request_error", "invalid_request"),
    ],
)
def test_error_event_types(claude, kind, code):
    relay = relay_for(claude, stream=True)
    payload = json.dumps({"type": "error", "error": {"type": kind, "message": "nope"}})
    (frame,) = relay.on_event(Event(payload, "error"))
    assert payloads([frame])[0]["error"]["code"] == code


def test_stream_cut_before_message_stop(claude):
    relay = relay_for(claude, stream=True, stream_options={"include_usage": True})
    cut = TEXT_STREAM.split("event: message_delta")[0]
    frames = run(relay, cut)
    assert "[DONE]" not in payloads(frames)
    assert not relay.finished and not relay.usage_complete
    assert relay.usage.output == 1  # only message_start's count was seen
    assert relay.on_end() == []


def test_stream_ignores_junk(claude):
    relay = relay_for(claude, stream=True)
    assert relay.on_event(Event("not json")) == []
    assert relay.on_event(Event("[1, 2]")) == []
    assert relay.on_event(Event('{"type": "ping"}', "ping")) == []
    assert relay.on_event(Event('{"type": "future_event"}', "future_event")) == []
