"""Malformed input never escapes as an unexpected exception.

A bad client request must be a 400 (ProxyError), never a 500; a malformed upstream answer must be
one of the exceptions `gateway.finish_json` maps to 502; a malformed stream event is skipped.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.proxy.errors import ProxyError
from app.proxy.metering import PricedModel
from app.proxy.sse import Event
from app.proxy.translate_anthropic import ChatToMessages
from app.proxy.translate_gemini import ChatToGemini
from tests.proxy_unit.conftest import TIERS

MODELS = {
    ChatToMessages: PricedModel("anthropic", "claude-sonnet-4-5", "C", 200_000, 64_000, TIERS),
    ChatToGemini: PricedModel("google", "gemini-2.5-flash", "G", 1_000_000, 65_536, TIERS),
}
KEYS = st.sampled_from(
    [
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "url",
        "tool_calls",
        "id",
        "function",
        "name",
        "arguments",
        "tool_call_id",
        "file",
        "file_data",
        "input_audio",
        "format",
        "parameters",
        "properties",
        "items",
        "$ref",
        "$defs",
        "anyOf",
        "allowed_tools",
        "tools",
        "mode",
        "json_schema",
        "schema",
        "cache_control",
        "extra_content",
        "google",
        "thought_signature",
        "candidates",
        "parts",
        "functionCall",
        "args",
        "finishReason",
        "index",
        "usageMetadata",
        "promptTokenCount",
        "usage",
        "input_tokens",
        "cache_creation",
        "message",
        "delta",
        "content_block",
        "stop_reason",
        "error",
        "status",
        "promptFeedback",
        "blockReason",
        "data",
        "filename",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        [
            "",
            "user",
            "assistant",
            "tool",
            "system",
            "text",
            "image_url",
            "function",
            "file",
            "data:image/png;base64,AAAA",
            "https://x.test/a.png",
            "{}",
            '{"a":1}',
            "[1]",
            "STOP",
            "SAFETY",
            "tool_use",
            "end_turn",
            "text_delta",
            "input_json_delta",
            "tool_use",
            "#/$defs/A",
            "object",
            "null",
            "wav",
            "ephemeral",
            "required",
            "auto",
        ]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)
    ),
    max_leaves=25,
)
REQUEST_KEYS = st.sampled_from(
    [
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "stop",
        "temperature",
        "top_p",
        "n",
        "reasoning_effort",
        "parallel_tool_calls",
        "stream_options",
        "top_k",
        "seed",
    ]
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("translator", list(MODELS))
@FUZZ
@given(body=st.dictionaries(REQUEST_KEYS, JSON, max_size=5), messages=st.lists(JSON, max_size=4))
def test_requests_fail_only_with_400(translator, body, messages):
    body = {"model": "m", "messages": messages, **body}
    try:
        instance = translator(body, MODELS[translator])
        instance.validate()
        call = instance.upstream_call(output_limit=100, opaque_user="u")
        json.dumps(call.body)
    except ProxyError as error:
        assert error.status == 400
        assert error.param


@pytest.mark.parametrize("translator", list(MODELS))
@FUZZ
@given(
    upstream=JSON, events=st.lists(st.tuples(JSON, st.sampled_from([None, "error"])), max_size=6)
)
def test_answers_fail_only_as_malformed(translator, upstream, events):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    instance = translator(body, MODELS[translator])
    instance.validate()
    # gateway.finish_json turns exactly these into a 502 "malformed answer".
    with contextlib.suppress(ValueError, KeyError, TypeError):
        json.dumps(instance.relay().response_body(upstream))
    relay = instance.relay()
    for payload, name in events:
        for frame in relay.on_event(Event(json.dumps(payload), name)):
            assert isinstance(frame, bytes)
    relay.on_end()


# --- mutations of valid traffic: one subtree replaced by arbitrary JSON ----------------------------

RICH_REQUEST = {
    "model": "m",
    "messages": [
        {
            "role": "system",
            "content": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                    "extra_content": {"google": {"thought_signature": "s"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r"}]},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}},
                    "$defs": {"A": {"type": ["integer", "null"]}},
                },
            },
        }
    ],
    "tool_choice": {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "auto",
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    },
    "stop": ["x"],
    "stream_options": {"include_usage": True},
}
ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "usage": {"input_tokens": 3, "cache_creation": {"ephemeral_5m_input_tokens": 1}},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "a"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "b"}},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": "{}"},
    },
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
    {"type": "message_stop"},
    {"type": "error", "error": {"type": "overloaded_error", "message": "m"}},
]
GEMINI_EVENTS = [
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "a"},
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "s"},
                    ]
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
        "promptFeedback": {"blockReason": "SAFETY"},
        "responseId": "r",
    },
    {"error": {"code": 503, "message": "m", "status": "UNAVAILABLE"}},
]


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def replaced(value, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


@pytest.mark.parametrize("translator", list(MODELS))
@FUZZ
@given(path=st.sampled_from(list(paths(RICH_REQUEST))[1:]), new=JSON)
def test_mutated_requests_fail_only_with_400(translator, path, new):
    body = replaced(RICH_REQUEST, path, new)
    try:
        instance = translator(body, MODELS[translator])
        instance.validate()
        json.dumps(instance.upstream_call(output_limit=100, opaque_user="u").body)
    except ProxyError as error:
        assert error.status == 400
        assert error.param


@pytest.mark.parametrize(
    "translator, events",
    [(ChatToMessages, ANTHROPIC_EVENTS), (ChatToGemini, GEMINI_EVENTS)],
)
@FUZZ
@given(data=st.data())
def test_mutated_answers_never_raise(translator, events, data):
    path = data.draw(st.sampled_from(list(paths(events))[1:]))
    mutated = replaced(events, path, data.draw(JSON))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    instance = translator(body, MODELS[translator])
    instance.validate()
    relay = instance.relay()
    for payload in mutated if isinstance(mutated, list) else [mutated]:
        for frame in relay.on_event(Event(json.dumps(payload))):
            assert isinstance(frame, bytes)
    relay.on_end()
    for payload in mutated if isinstance(mutated, list) else [mutated]:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            json.dumps(instance.relay().response_body(payload))
