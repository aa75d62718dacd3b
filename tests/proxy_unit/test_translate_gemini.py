"""OpenAI Chat Completions <-> Gemini generateContent: requests, answers, streams, usage, cost."""

from __future__ import annotations

import json

import openai
import pytest

from app.proxy.errors import ProxyError
from app.proxy.sse import Event
from app.proxy.translate_gemini import ChatToGemini, gemini_schema
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
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def call_for(model, **body):
    body.setdefault("messages", [USER])
    translator = ChatToGemini({"model": "gemini-2.5-flash", **body}, model)
    translator.validate()
    return translator.upstream_call(output_limit=1024, opaque_user="onekey-abc")


def translate(model, **body) -> dict:
    return call_for(model, **body).body


def refused(model, **body) -> ProxyError:
    body.setdefault("messages", [USER])
    with pytest.raises(ProxyError) as caught:
        ChatToGemini({"model": "gemini-2.5-flash", **body}, model).validate()
    assert caught.value.condition == "invalid_request"
    assert caught.value.status == 400
    return caught.value


# --- requests -----------------------------------------------------------------------------------


def test_upstream_call_shape(gemini):
    call = call_for(gemini)
    assert call.provider == "google"
    assert call.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.stream is False
    assert call.query == {}
    assert call.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "generationConfig": {"maxOutputTokens": 1024},
    }
    stream = call_for(gemini, stream=True, stream_options={"include_usage": True})
    assert stream.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert stream.query == {"alt": "sse"}
    assert stream.stream is True
    assert "stream" not in stream.body and "stream_options" not in stream.body


def test_system_instruction_and_turns(gemini):
    body = translate(
        gemini,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "four"},
        ],
    )
    assert body["systemInstruction"] == {
        "parts": [{"text": "Be terse."}, {"text": "Use metric units."}]
    }
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},
        {"role": "user", "parts": [{"text": "four"}]},
    ]


def test_media_parts(gemini):
    body = translate(
        gemini,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe these."},
                    {"type": "image_url", "image_url": {"url": TEXT_BLOB}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/a/cat.JPG?x=1"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/doc.pdf"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                ],
            }
        ],
    )
    assert body["contents"][0]["parts"] == [
        {"text": "Describe these."},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a/cat.JPG?x=1"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/doc.pdf"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
    ]


@pytest.mark.parametrize(
    "part, param",
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/image"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/x.unknownext"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "flac"}},
            "messages[0].content[0].input_audio",
        ),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0].file.file_id"),
        (
            {"type": "file", "file": {"file_data": "QUJD", "filename": "blob"}},
            "messages[0].content[0].file.file_data",
        ),
        ({"type": "refusal", "refusal": "no"}, "messages[0].content[0]"),
    ],
)
def test_unsupported_content_parts(gemini, part, param):
    assert refused(gemini, messages=[{"role": "user", "content": [part]}]).param == param


def test_generation_config(gemini):
    config = translate(
        gemini,
        temperature=1.6,
        top_p=0.8,
        top_k=20,
        stop=["END", "STOP"],
        n=3,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        seed=7,
        reasoning_effort="low",
    )["generationConfig"]
    assert config == {
        "temperature": 1.6,
        "topP": 0.8,
        "topK": 20,
        "stopSequences": ["END", "STOP"],
        "candidateCount": 3,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.25,
        "seed": 7,
        "thinkingConfig": {"thinkingBudget": 1024},
        "maxOutputTokens": 1024,
    }
    assert translate(gemini, stop="END")["generationConfig"]["stopSequences"] == ["END"]
    assert translate(gemini, reasoning_effort="none")["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 0
    }


def test_response_format(gemini):
    config = translate(gemini, response_format={"type": "json_object"})["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "responseSchema" not in config
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "kind": {"const": "person"},
        },
        "required": ["name", "age", "tags", "kind"],
        "additionalProperties": False,
        "$defs": {"Tag": {"type": "string", "enum": ["a", "b"]}},
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "strict": True, "schema": schema},
    }
    config = translate(gemini, response_format=response_format)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "kind": {"enum": ["person"]},
        },
        "required": ["name", "age", "tags", "kind"],
        "additionalProperties": False,
    }
    assert (
        "responseSchema"
        not in translate(
            gemini, response_format={"type": "json_schema", "json_schema": {"name": "x"}}
        )["generationConfig"]
    )
    assert (
        "responseMimeType"
        not in translate(gemini, response_format={"type": "text"})["generationConfig"]
    )


def test_schema_conversion_of_unions():
    assert gemini_schema(
        {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "maybe"}, "p"
    ) == {"nullable": True, "type": "string", "description": "maybe"}
    assert gemini_schema({"type": ["string", "number"]}, "p") == {
        "anyOf": [{"type": "string"}, {"type": "number"}]
    }
    assert gemini_schema({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "p") == {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }
    assert gemini_schema(
        {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]}, "p"
    ) == {"type": "object", "properties": {"a": {"type": "string"}}}


def test_recursive_schema_is_refused():
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    with pytest.raises(ProxyError) as caught:
        gemini_schema(schema, "response_format")
    assert caught.value.param == "response_format"


@pytest.mark.parametrize(
    "params, param",
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"n": 9}, "n"),
        ({"n": 0}, "n"),
        ({"seed": "x"}, "seed"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 5}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {"search_context_size": "low"}}, "web_search_options"),
        ({"verbosity": "high"}, "verbosity"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"stream_options": "yes"}, "stream_options"),
    ],
)
def test_refusals_name_the_parameter(gemini, params, param):
    error = refused(gemini, **params)
    assert error.param == param
    assert param.split("[")[0] in error.message


def test_no_op_defaults_and_ignored_fields(gemini):
    body = translate(
        gemini,
        logprobs=False,
        logit_bias={},
        modalities=["text"],
        parallel_tool_calls=True,
        user="someone",
        metadata={"a": "b"},
        store=False,
        service_tier="default",
    )
    assert set(body) == {"contents", "generationConfig"}
    assert body["generationConfig"] == {"maxOutputTokens": 1024}


def test_tools_and_tool_choice(gemini):
    body = translate(gemini, tools=[WEATHER, CLOCK])
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER["function"]["parameters"],
                },
                {"name": "get_time"},  # Gemini refuses an object schema without properties
            ]
        }
    ]
    assert "toolConfig" not in body
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    for choice, mode in modes.items():
        config = translate(gemini, tools=[WEATHER], tool_choice=choice)["toolConfig"]
        assert config == {"functionCallingConfig": {"mode": mode}}
    forced = {"type": "function", "function": {"name": "get_weather"}}
    config = translate(gemini, tools=[WEATHER, CLOCK], tool_choice=forced)["toolConfig"]
    assert config == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "auto",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    body = translate(gemini, tools=[WEATHER, CLOCK], tool_choice=allowed)
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["get_time"]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


@pytest.mark.parametrize(
    "params, param",
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_tools(gemini, params, param):
    assert refused(gemini, **params).param == param


def test_tool_call_history(gemini):
    body = translate(
        gemini,
        tools=[WEATHER, CLOCK],
        messages=[
            {"role": "user", "content": "Weather in Paris, and the time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 18}'},
            {
                "role": "tool",
                "tool_call_id": "call_b",
                "content": [{"type": "text", "text": "12:00"}],
            },
            {"role": "user", "content": "Thanks"},
        ],
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris, and the time?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "c2lnbmF0dXJl",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": '{"temp": 18}'},
                    }
                },
                {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_tool_names_follow_reused_ids(gemini):
    """Ids repeat across turns in some clients; the latest assistant call with the id wins."""

    def calling(name):
        return {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}
            ],
        }

    body = translate(
        gemini,
        messages=[
            USER,
            calling("get_time"),
            {"role": "tool", "tool_call_id": "call_0", "content": "noon"},
            calling("get_weather"),
            {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        ],
    )
    names = [
        part["functionResponse"]["name"]
        for content in body["contents"]
        for part in content["parts"]
        if "functionResponse" in part
    ]
    assert names == ["get_time", "get_weather"]


def test_tool_message_without_matching_call(gemini):
    messages = [USER, {"role": "tool", "tool_call_id": "call_zzz", "content": "x"}]
    assert refused(gemini, messages=messages).param == "messages[1].tool_call_id"


# --- answers ------------------------------------------------------------------------------------

RESPONSE = {
    "candidates": [
        {
            "content": {
                "parts": [{"text": "Hello there! "}, {"text": "How can I help?"}],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [],
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 5,
        "candidatesTokenCount": 7,
        "totalTokenCount": 12,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}


def relay_for(gemini, **body):
    body.setdefault("messages", [USER])
    translator = ChatToGemini({"model": "m", **body}, gemini)
    translator.validate()
    return translator.relay()


def test_text_answer(gemini):
    relay = relay_for(gemini)
    body = relay.response_body(json.loads(json.dumps(RESPONSE)))
    parsed = completion(body)
    assert parsed.id == "chatcmpl-mAitaLmkHPPlz7IPvtfUqQ4"
    assert parsed.model == "gemini-2.5-flash"
    assert parsed.object == "chat.completion"
    (choice,) = parsed.choices
    assert choice.message.content == "Hello there! How can I help?"
    assert choice.finish_reason == "stop"
    assert body["usage"]["prompt_tokens"] == 5
    assert body["usage"]["completion_tokens"] == 7
    assert body["usage"]["total_tokens"] == 12
    # 5 × 3.30 + 7 × 16.50 = 132 µcredits
    assert body["usage"]["cost"] == 0.000132
    assert relay.finished and relay.usage_complete
    assert relay.delivered_bytes == len("Hello there! How can I help?")


def test_usage_with_cache_thoughts_and_tool_prompt(gemini):
    usage = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1000,
        "candidatesTokenCount": 40,
        "thoughtsTokenCount": 60,
        "toolUsePromptTokenCount": 10,
        "totalTokenCount": 1310,
    }
    relay = relay_for(gemini)
    body = relay.response_body({**RESPONSE, "usageMetadata": usage})
    # input 1200 - 1000 + 10 = 210 × 3.30, cached 1000 × 0.33, output 40 + 60 = 100 × 16.50
    # = 693 + 330 + 1650 = 2673 µcredits.
    assert body["usage"] == {
        "prompt_tokens": 1210,
        "completion_tokens": 100,
        "total_tokens": 1310,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 60},
        "cost": 0.002673,
    }
    assert relay.usage.output == 100 and relay.usage.reasoning == 60
    completion(body)


def test_function_call_answer(gemini):
    upstream = {
        **RESPONSE,
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "thinking about it", "thought": True},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Köln"}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"name": "get_time"}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
    }
    relay = relay_for(gemini, tools=[WEATHER, CLOCK])
    body = relay.response_body(upstream)
    parsed = completion(body)
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None  # the thought part is not content
    first, second = choice.message.tool_calls
    assert first.id.startswith("call_") and second.id.startswith("call_") and first.id != second.id
    assert first.function.name == "get_weather"
    assert json.loads(first.function.arguments) == {"city": "Köln"}
    assert second.function.arguments == "{}"
    assert body["choices"][0]["message"]["tool_calls"][0]["extra_content"] == {
        "google": {"thought_signature": "c2ln"}
    }
    assert "extra_content" not in body["choices"][0]["message"]["tool_calls"][1]
    assert relay.delivered_bytes == len(first.function.arguments.encode()) + 2


def test_several_candidates(gemini):
    upstream = {
        **RESPONSE,
        "candidates": [
            {
                "content": {"parts": [{"text": "B"}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
            {
                "content": {"parts": [{"text": "A"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            },
        ],
    }
    parsed = completion(relay_for(gemini, n=2).response_body(upstream))
    assert [(c.index, c.message.content, c.finish_reason) for c in parsed.choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


@pytest.mark.parametrize(
    "reason, finish",
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(gemini, reason, finish):
    upstream = {**RESPONSE, "candidates": [{**RESPONSE["candidates"][0], "finishReason": reason}]}
    assert completion(relay_for(gemini).response_body(upstream)).choices[0].finish_reason == finish


def test_blocked_prompt(gemini):
    upstream = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "blocked1",
    }
    relay = relay_for(gemini)
    parsed = completion(relay.response_body(upstream))
    assert parsed.choices[0].finish_reason == "content_filter"
    assert parsed.choices[0].message.content is None
    assert parsed.usage.prompt_tokens == 8 and parsed.usage.completion_tokens == 0


def test_malformed_answer(gemini):
    with pytest.raises(ValueError):
        relay_for(gemini).response_body([RESPONSE])


# --- streams ------------------------------------------------------------------------------------


def sse(*chunks_: dict) -> str:
    """Gemini's SSE framing: data lines ended by CRLF pairs."""
    return "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks_)


TEXT_STREAM = sse(
    {
        "candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    },
    {
        "candidates": [{"content": {"parts": [{"text": " sky is "}], "role": "model"}, "index": 0}],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    },
    {
        "candidates": [
            {
                "content": {"parts": [{"text": "blue."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 6,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 45,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    },
)

TOOL_STREAM = sse(
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Checking both."},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2lnbmF0dXJl",
                        },
                        {"functionCall": {"name": "get_time", "args": {}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 50,
            "candidatesTokenCount": 20,
            "totalTokenCount": 70,
        },
        "responseId": "resp-2",
    }
)

ERROR_STREAM = sse(
    {
        "candidates": [{"content": {"parts": [{"text": "Partial"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "responseId": "resp-3",
    },
    {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
)


def test_text_stream_with_usage(gemini):
    relay = relay_for(gemini, stream=True, stream_options={"include_usage": True})
    frames = run(relay, TEXT_STREAM)
    parsed = chunks(frames)
    assert {c.id for c in parsed} == {"chatcmpl-resp-1"}
    assert len({c.created for c in parsed}) == 1
    assert all(c.model == "gemini-2.5-flash" for c in parsed)
    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[0].choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in parsed[1:4]] == ["The", " sky is ", "blue."]
    assert parsed[4].choices[0].finish_reason == "stop"
    assert parsed[4].choices[0].delta.content is None
    usage = parsed[5]
    assert usage.choices == []
    # Cumulative counts: the last report (9 prompt, 6 + 30 thinking output) wins, never a sum.
    assert usage.usage.prompt_tokens == 9
    assert usage.usage.completion_tokens == 36
    assert usage.usage.completion_tokens_details.reasoning_tokens == 30
    assert usage.usage.total_tokens == 45
    # 9 × 3.30 + 36 × 16.50 = 29.7 + 594 = 623.7 µcredits
    assert payloads(frames)[5]["usage"]["cost"] == 0.0006237
    assert len(parsed) == 6
    assert relay.finished and relay.usage_complete
    assert relay.delivered_bytes == len("The sky is blue.")


def test_text_stream_without_usage_and_through_the_sdk(gemini):
    relay = relay_for(gemini, stream=True)
    frames = run(relay, TEXT_STREAM)
    assert all(c.choices for c in chunks(frames))
    assert relay.usage.output == 36
    received = sdk_stream(frames)
    assert "".join(c.choices[0].delta.content or "" for c in received) == "The sky is blue."
    final = sdk_final(frames)
    assert final.choices[0].message.content == "The sky is blue."
    assert final.choices[0].finish_reason == "stop"


def test_tool_call_stream(gemini):
    relay = relay_for(
        gemini, stream=True, tools=[WEATHER, CLOCK], stream_options={"include_usage": True}
    )
    frames = run(relay, TOOL_STREAM)
    parsed = chunks(frames)
    deltas = [c.choices[0].delta for c in parsed if c.choices]
    starts = [d.tool_calls[0] for d in deltas if d.tool_calls and d.tool_calls[0].id]
    assert [(s.index, s.type, s.function.name, s.function.arguments) for s in starts] == [
        (0, "function", "get_weather", ""),
        (1, "function", "get_time", ""),
    ]
    assert all(s.id.startswith("call_") for s in starts)
    assert starts[0].model_extra["extra_content"] == {
        "google": {"thought_signature": "c2lnbmF0dXJl"}
    }
    pieces = [d.tool_calls[0] for d in deltas if d.tool_calls and not d.tool_calls[0].id]
    assert [(p.index, p.function.arguments) for p in pieces] == [
        (0, '{"city": "Paris"}'),
        (1, "{}"),
    ]
    assert [c.choices[0].finish_reason for c in parsed if c.choices][-1] == "tool_calls"
    assert parsed[-1].usage.total_tokens == 70
    assert relay.delivered_bytes == len("Checking both.") + len('{"city": "Paris"}') + 2
    final = sdk_final(run(relay_for(gemini, stream=True, tools=[WEATHER, CLOCK]), TOOL_STREAM))
    message = final.choices[0].message
    assert message.content == "Checking both."
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [{"city": "Paris"}, {}]
    assert final.choices[0].finish_reason == "tool_calls"


def test_error_chunk_mid_stream(gemini):
    relay = relay_for(gemini, stream=True, stream_options={"include_usage": True})
    frames = run(relay, ERROR_STREAM)
    data = payloads(frames)
    assert data[-1]["error"]["message"] == "Google: The model is overloaded."
    assert data[-1]["error"]["code"] == "upstream_error"
    assert "[DONE]" not in data
    assert not relay.finished and not relay.usage_complete
    assert relay.usage.input == 9
    with pytest.raises(openai.APIError, match="overloaded"):
        sdk_stream(frames)


def test_rate_limit_error_chunk(gemini):
    relay = relay_for(gemini, stream=True)
    payload = json.dumps(
        {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}
    )
    (frame,) = relay.on_event(Event(payload))
    assert payloads([frame])[0]["error"]["code"] == "rate_limited"


def test_stream_without_finish_reason_is_not_finished(gemini):
    relay = relay_for(gemini, stream=True)
    frames = run(relay, TEXT_STREAM.split("\r\n\r\n")[0] + "\r\n\r\n")
    assert "[DONE]" not in payloads(frames)
    assert not relay.finished and not relay.usage_complete
    assert relay.usage.input == 9 and relay.usage.output == 0


def test_finish_without_usage_then_usage(gemini):
    """usage_complete needs the final counts; a later chunk with counts still completes them."""
    relay = relay_for(gemini, stream=True)
    relay.on_event(
        Event(
            json.dumps(
                {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}
            )
        )
    )
    assert relay.finished and not relay.usage_complete
    relay.on_event(
        Event(json.dumps({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}}))
    )
    assert relay.usage_complete and relay.usage.output == 1


def test_blocked_prompt_stream(gemini):
    relay = relay_for(gemini, stream=True)
    frames = run(
        relay,
        sse(
            {
                "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
                "responseId": "r",
            }
        ),
    )
    parsed = chunks(frames)
    assert parsed[-1].choices[0].finish_reason == "content_filter"
    assert relay.finished and relay.usage_complete


def test_stream_with_two_candidates(gemini):
    relay = relay_for(gemini, stream=True, n=2)
    frames = run(
        relay,
        sse(
            {
                "candidates": [
                    {"content": {"parts": [{"text": "A"}], "role": "model"}, "index": 0},
                    {"content": {"parts": [{"text": "B"}], "role": "model"}, "index": 1},
                ],
                "responseId": "r2",
            },
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": "a"}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    },
                    {
                        "content": {"parts": [{"text": "b"}], "role": "model"},
                        "finishReason": "MAX_TOKENS",
                        "index": 1,
                    },
                ],
                "usageMetadata": {
                    "promptTokenCount": 3,
                    "candidatesTokenCount": 4,
                    "totalTokenCount": 7,
                },
                "responseId": "r2",
            },
        ),
    )
    parsed = chunks(frames)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    roles = []
    for chunk in parsed:
        choice = chunk.choices[0]
        if choice.delta.role:
            roles.append(choice.index)
        texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        if choice.finish_reason:
            finishes[choice.index] = choice.finish_reason
    assert roles == [0, 1]
    assert texts == {0: "Aa", 1: "Bb"}
    assert finishes == {0: "stop", 1: "length"}
    assert relay.usage_complete


def test_thought_parts_are_not_streamed(gemini):
    relay = relay_for(gemini, stream=True)
    frames = run(
        relay,
        sse(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [{"text": "secret reasoning", "thought": True}, {"text": "Hi"}]
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 2,
                    "candidatesTokenCount": 1,
                    "thoughtsTokenCount": 5,
                },
            }
        ),
    )
    assert b"secret" not in b"".join(frames)
    assert relay.usage.output == 6 and relay.delivered_bytes == 2


def test_stream_ignores_junk(gemini):
    relay = relay_for(gemini, stream=True)
    assert relay.on_event(Event("not json")) == []
    assert relay.on_event(Event("[]")) == []
