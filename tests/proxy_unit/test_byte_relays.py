"""Same-dialect streams relayed as bytes: what passes unchanged, what is rewritten, what is metered.

The upstream bytes may be cut anywhere (TCP reads) and use \\n, \\r\\n or \\r line endings; the client
must get the same frames, and metering the same counts, whatever the cuts.
"""

from __future__ import annotations

import json
import queue

import pytest

from app.proxy import anthropic, gemini, openai, streaming
from app.proxy.errors import ProxyError
from app.proxy.metering import PricedModel
from app.proxy.relay import BaseRelay
from app.proxy.sse import SSEParser, parse_stream
from tests.proxy_unit.conftest import TIERS
from tests.proxy_unit.wire import chunks as sdk_chunks
from tests.proxy_unit.wire import payloads

# Text with everything a JSON string may carry: escapes, raw UTF-8, an escaped surrogate pair.
TRICKY = 'line\nbreak "quoted" back\\slash tab\t café ☕ 😀'


def model(provider: str, model_id: str) -> PricedModel:
    return PricedModel(provider, model_id, model_id, 128_000, 16_384, TIERS)


GPT = model("openai", "gpt-4o-mini")
GROK = model("xai", "grok-3-mini")
CLAUDE = model("anthropic", "claude-sonnet-4-5")
FLASH = model("google", "gemini-2.5-flash")


def utf8(text: str) -> int:
    return len(text.encode())


def sse(objects: list, *, eol: str = "\n", events: bool = False, ascii_only=False) -> bytes:
    out = []
    for obj in objects:
        data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=ascii_only)
        name = f"event: {obj['type']}{eol}" if events and isinstance(obj, dict) else ""
        out.append(f"{name}data: {data}{eol}{eol}")
    return "".join(out).encode()


def relay_bytes(relay: BaseRelay, raw: bytes, cuts: list[int] = ()) -> bytes:
    """Feed `raw` cut at these offsets; everything the client got, end included."""
    out = []
    start = 0
    for cut in [*cuts, len(raw)]:
        out.append(relay.feed(raw[start:cut]))
        start = cut
    out.append(relay.end())
    return b"".join(out)


def every_split(make_relay, raw: bytes) -> tuple[bytes, BaseRelay]:
    """The answer for `raw` whole; asserts every two-piece and byte-by-byte cut gives the same
    bytes and the same metering."""
    whole_relay = make_relay()
    whole = relay_bytes(whole_relay, raw)
    state = metering(whole_relay)
    for cut in range(1, len(raw)):
        relay = make_relay()
        assert relay_bytes(relay, raw, [cut]) == whole, f"cut at {cut}"
        assert metering(relay) == state, f"cut at {cut}"
    relay = make_relay()
    assert relay_bytes(relay, raw, list(range(1, len(raw)))) == whole
    assert metering(relay) == state
    return whole, whole_relay


def metering(relay: BaseRelay) -> tuple:
    return (
        relay.usage,
        relay.usage_complete,
        relay.finished,
        relay.failed,
        relay.delivered_bytes,
    )


# --- the SSE parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_parser_gives_the_same_events_whatever_the_cuts_and_line_endings(eol):
    text = (
        ": a comment{e}{e}event: one{e}data: first{e}{e}"
        "data: two{e}data: lines{e}{e}{e}"
        "id: 7{e}data:no space{e}{e}event: only-a-name{e}{e}data: tail"
    ).replace("{e}", eol)
    raw = text.encode()
    expected = [
        (b"one", b"first"),
        (None, b"two\nlines"),
        (None, b"no space"),
        (b"only-a-name", b""),
        (None, b"tail"),
    ]
    for cut in range(len(raw) + 1):
        parser = SSEParser()
        events = parser.feed(raw[:cut]) + parser.feed(raw[cut:]) + parser.flush()
        assert events == expected, f"cut at {cut}"
    parser = SSEParser()
    events = [event for byte in raw for event in parser.feed(bytes([byte]))] + parser.flush()
    assert events == expected


def test_parse_stream_decodes_for_translators():
    (event,) = parse_stream([b"event: x\r\n", "data: café\r\n\r\n".encode()])
    assert (event.event, event.data) == ("x", "café")


# --- Chat Completions (OpenAI, xAI) -----------------------------------------------------------


def chat_chunk(delta: dict, *, finish=None, usage=None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
TOOL_ARGUMENTS = '{"city": "Zürich \\"old town\\""}'


def chat_stream(*, eol="\n", ascii_only=False, usage_on_last_content=False) -> bytes:
    last = chat_chunk({}, finish="stop", usage=USAGE if usage_on_last_content else None)
    objects = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": TRICKY}),
        chat_chunk({"reasoning_content": "thinking…"}),
        chat_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": TOOL_ARGUMENTS},
                    }
                ]
            }
        ),
        last,
    ]
    if not usage_on_last_content:
        objects.append({**chat_chunk({}), "choices": [], "usage": USAGE})
    objects.append("[DONE]")
    return sse(objects, eol=eol, ascii_only=ascii_only)


DELIVERED = utf8(TRICKY) + utf8("thinking…") + utf8(TOOL_ARGUMENTS)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "escaped"])
def test_chat_chunks_pass_unchanged_and_the_unasked_usage_chunk_is_removed(eol, ascii_only):
    raw = chat_stream(eol=eol, ascii_only=ascii_only)
    out, relay = every_split(lambda: openai.ChatRelay(GPT, client_wants_usage=False), raw)
    upstream = raw.decode().replace("\r\n", "\n").split("\n\n")
    expected = [frame for frame in upstream if frame and '"choices": []' not in frame]
    assert out == "".join(frame + "\n\n" for frame in expected).encode()  # the bytes as they came
    assert all(chunk.choices for chunk in sdk_chunks([out]))
    assert relay.usage.input == 10 and relay.usage.output == 20
    assert relay.usage_complete and relay.finished and not relay.failed
    assert relay.delivered_bytes == DELIVERED


def test_chat_usage_chunk_carries_the_cost_when_asked():
    out, relay = every_split(
        lambda: openai.ChatRelay(GPT, client_wants_usage=True), chat_stream(eol="\r\n")
    )
    *_, usage_chunk, done = payloads([out])
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    # 10 × 3.30 + 20 × 16.50 = 363 µcredits, a JSON number
    assert usage_chunk["usage"] == {**USAGE, "cost": 0.000363}
    assert relay.delivered_bytes == DELIVERED


@pytest.mark.parametrize(
    ("wants", "expected"), [(False, None), (True, {**USAGE, "cost": 0.000363})]
)
def test_chat_usage_on_a_content_chunk(wants, expected):
    relay = openai.ChatRelay(GPT, client_wants_usage=wants)
    out = relay_bytes(relay, chat_stream(usage_on_last_content=True))
    *_, last, done = payloads([out])
    assert done == "[DONE]"
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"] == expected
    assert relay.usage_complete and relay.delivered_bytes == DELIVERED


def test_xai_error_is_reshaped_for_the_openai_sdk():
    raw = sse(
        [
            chat_chunk({"content": "Hi"}),
            {"code": "Internal error", "error": "Internal error while generating"},
        ]
    )
    out, relay = every_split(lambda: openai.ChatRelay(GROK, client_wants_usage=False), raw)
    *_, error = payloads([out])
    assert error == {
        "error": {
            "message": "Internal error while generating",
            "type": "api_error",
            "code": "Internal error",
            "param": None,
        }
    }
    assert relay.failed and not relay.finished and relay.delivered_bytes == 2


def test_chat_openai_error_passes_as_sent():
    error = {"error": {"message": "boom", "type": "server_error", "code": None, "param": None}}
    relay = openai.ChatRelay(GPT, client_wants_usage=False)
    assert payloads([relay_bytes(relay, sse([error]))]) == [error]
    assert relay.failed


def test_chat_text_that_looks_like_usage_or_error_is_not_parsed():
    text = 'say "usage": {"a": 1} and "error" please'
    relay = openai.ChatRelay(GPT, client_wants_usage=False)
    raw = sse([chat_chunk({"content": text}), "[DONE]"])
    assert relay_bytes(relay, raw) == raw
    assert relay.delivered_bytes == utf8(text) and relay.usage is None and not relay.failed


def test_chat_drops_data_that_is_no_json_object():
    relay = openai.ChatRelay(GPT, client_wants_usage=False)
    assert relay_bytes(relay, b"data: keep-alive\n\n: comment\n\ndata: [DONE]\n\n") == (
        b"data: [DONE]\n\n"
    )


# --- Responses --------------------------------------------------------------------------------


def responses_stream(eol="\n") -> bytes:
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 30,
    }
    return sse(
        [
            {"type": "response.created", "sequence_number": 0, "response": {"usage": None}},
            {"type": "response.output_text.delta", "sequence_number": 1, "delta": TRICKY},
            {
                "type": "response.function_call_arguments.delta",
                "sequence_number": 2,
                "delta": TOOL_ARGUMENTS,
            },
            {"type": "response.completed", "sequence_number": 3, "response": {"usage": usage}},
        ],
        eol=eol,
        events=True,
    )


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_responses_events_pass_and_the_terminal_one_carries_the_cost(eol):
    raw = responses_stream(eol)
    out, relay = every_split(lambda: openai.ResponsesRelay(GPT), raw)
    events = list(parse_stream([out]))
    assert [e.event for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.completed",
    ]
    upstream = raw.decode().replace("\r\n", "\n").encode()
    assert out.startswith(upstream[: upstream.index(b"event: response.completed")])
    assert json.loads(events[-1].data)["response"]["usage"]["cost"] == 0.000363
    assert relay.finished and relay.usage_complete and relay.usage.reasoning == 5
    assert relay.delivered_bytes == utf8(TRICKY) + utf8(TOOL_ARGUMENTS)


def test_responses_error_event_passes_and_fails_the_stream():
    error = {"type": "error", "sequence_number": 1, "code": "server_error", "message": "boom"}
    relay = openai.ResponsesRelay(GPT)
    out = relay_bytes(relay, sse([error], events=True))
    assert out == sse([error], events=True)
    assert relay.failed and not relay.finished


def test_responses_event_without_an_event_line_is_named_from_its_type():
    relay = openai.ResponsesRelay(GPT)
    out = relay_bytes(relay, sse([{"type": "response.output_text.delta", "delta": "Hi"}]))
    (event,) = parse_stream([out])
    assert event.event == "response.output_text.delta"
    assert relay.delivered_bytes == 2


# --- Anthropic Messages -----------------------------------------------------------------------


def messages_stream(eol="\n") -> bytes:
    return sse(
        [
            {
                "type": "message_start",
                "message": {"id": "msg_1", "usage": {"input_tokens": 11, "output_tokens": 1}},
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hmm…"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": TRICKY},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": TOOL_ARGUMENTS},
            },
            {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "s"}},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 6},
            },
            {"type": "message_stop"},
        ],
        eol=eol,
        events=True,
    )


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_messages_events_pass_unchanged(eol):
    raw = messages_stream(eol)
    out, relay = every_split(lambda: anthropic.MessagesRelay(CLAUDE), raw)
    assert out == raw.replace(eol.encode(), b"\n")
    assert relay.usage.input == 11 and relay.usage.output == 6  # message_delta's replace
    assert relay.finished and relay.usage_complete and not relay.failed
    assert relay.delivered_bytes == utf8("hmm…") + utf8(TRICKY) + utf8(TOOL_ARGUMENTS)


def test_messages_counts_before_the_end_are_not_complete():
    raw = messages_stream()
    relay = anthropic.MessagesRelay(CLAUDE)
    relay.feed(raw[: raw.index(b"event: message_delta")])
    assert relay.usage.output == 1 and not relay.usage_complete and not relay.finished


def test_what_the_reader_had_read_when_the_client_left_is_billed():
    """The client went away with the provider's final counts already read from upstream (found by
    the chaos soak: such a stream was billed as partial, below the provider's report)."""
    raw = messages_stream()
    cut = raw.index(b"event: content_block_delta")
    relay = anthropic.MessagesRelay(CLAUDE)
    relay.feed(raw[:cut])  # what reached the client before it left
    buffered: queue.SimpleQueue = queue.SimpleQueue()
    buffered.put(raw[cut:])
    buffered.put(None)
    streaming._feed_buffered(buffered, relay)
    assert relay.usage_complete and relay.finished
    assert relay.usage.input == 11 and relay.usage.output == 6


def test_nothing_after_a_broken_upstream_is_fed():
    raw = messages_stream()
    cut = raw.index(b"event: message_delta")
    relay = anthropic.MessagesRelay(CLAUDE)
    buffered: queue.SimpleQueue = queue.SimpleQueue()
    for item in (raw[:cut], ConnectionError("reset"), raw[cut:], None):
        buffered.put(item)
    streaming._feed_buffered(buffered, relay)
    assert relay.usage.output == 1 and not relay.usage_complete and not relay.finished


def test_messages_error_event():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    relay = anthropic.MessagesRelay(CLAUDE)
    assert relay_bytes(relay, sse([error], events=True)) == sse([error], events=True)
    assert relay.failed and not relay.finished


def test_messages_gateway_error_frame_is_anthropic_shaped():
    frame = anthropic.MessagesRelay(CLAUDE).error_frame(ProxyError("upstream_timeout", "slow"))
    (event,) = parse_stream([frame])
    assert event.event == "error"
    assert json.loads(event.data) == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "slow"},
    }


# --- Gemini generateContent -------------------------------------------------------------------


def gemini_chunk(parts: list, *, finish=None, usage=None) -> dict:
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if usage is not None:
        chunk["usageMetadata"] = usage
    return chunk


def gemini_stream(eol="\r\n", ascii_only=False) -> bytes:
    return sse(
        [
            gemini_chunk([{"text": TRICKY}], usage={"promptTokenCount": 5, "totalTokenCount": 5}),
            gemini_chunk([{"text": "more", "thought": True}], usage={}),
            gemini_chunk(
                [{"functionCall": {"name": "weather", "args": {"city": "Zürich"}}}],
                finish="STOP",
                usage={
                    "promptTokenCount": 5,
                    "candidatesTokenCount": 7,
                    "thoughtsTokenCount": 3,
                    "totalTokenCount": 15,
                },
            ),
        ],
        eol=eol,
        ascii_only=ascii_only,
    )


GEMINI_DELIVERED = utf8(TRICKY) + utf8("more") + utf8('{"city":"Zürich"}')


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "escaped"])
def test_gemini_sse_chunks_pass_unchanged(eol, ascii_only):
    raw = gemini_stream(eol, ascii_only)
    out, relay = every_split(lambda: gemini.GenerateRelay(FLASH, as_sse=True), raw)
    assert out == raw.replace(eol.encode(), b"\r\n")  # as google-genai reads them
    assert relay.usage.input == 5 and relay.usage.output == 10 and relay.usage.reasoning == 3
    assert relay.finished and relay.usage_complete and not relay.failed
    assert relay.delivered_bytes == GEMINI_DELIVERED


def test_gemini_counts_read_without_a_finish_are_not_complete():
    raw = gemini_stream()
    relay = gemini.GenerateRelay(FLASH)
    relay.feed(raw[: raw.index(b"functionCall") - 100])
    assert relay.usage.input == 5 and not relay.usage_complete and not relay.finished


def test_gemini_json_array_frames_elements():
    raw = gemini_stream()
    out, relay = every_split(lambda: gemini.GenerateRelay(FLASH, as_sse=False), raw)
    elements = json.loads(out)
    assert elements == [json.loads(event.data) for event in parse_stream([raw])]
    assert relay.delivered_bytes == GEMINI_DELIVERED and relay.usage_complete


def test_gemini_json_array_error_closes_the_array():
    relay = gemini.GenerateRelay(FLASH, as_sse=False)
    out = relay.feed(sse([gemini_chunk([{"text": "Hi"}])]))
    out += relay.error_frame(ProxyError("upstream_timeout", "slow"))
    assert json.loads(out)[1] == {
        "error": {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}
    }


def test_gemini_in_stream_error_fails_the_stream():
    error = {"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}
    relay = gemini.GenerateRelay(FLASH, as_sse=False)
    out = relay_bytes(relay, sse([gemini_chunk([{"text": "Hi"}]), error]))
    assert json.loads(out) == [gemini_chunk([{"text": "Hi"}]), error]
    assert relay.failed and not relay.finished and relay.delivered_bytes == 2


def test_stream_ended_early_sends_no_closing():
    relay = gemini.GenerateRelay(FLASH, as_sse=False)
    out = relay_bytes(relay, sse([gemini_chunk([{"text": "Hi"}])]))
    assert out.startswith(b"[") and not out.endswith(b"]")  # the error frame closes it


def test_gemini_last_counts_win_and_empty_counts_change_nothing():
    relay = gemini.GenerateRelay(FLASH)
    relay.feed(sse([gemini_chunk([{"text": "a"}], usage={"promptTokenCount": 5})]))
    relay.feed(sse([gemini_chunk([{"functionCall": {"name": "f", "args": {}}}])]))
    assert relay.usage.input == 5  # a parsed chunk without counts keeps the earlier ones
    relay.feed(sse([gemini_chunk([{"text": "b"}], usage={"promptTokenCount": 6})]))
    relay.feed(sse([gemini_chunk([{"text": "c"}], usage={})]))
    assert relay.usage.input == 6
    relay.feed(sse([gemini_chunk([], finish="STOP", usage={"promptTokenCount": 7})]))
    relay.feed(sse([gemini_chunk([{"text": "d"}], usage={"promptTokenCount": 8})]))
    assert relay.usage.input == 8 and relay.usage_complete


def test_json_after_extra_whitespace_still_counts():
    relay = openai.ChatRelay(GPT, client_wants_usage=False)
    raw = b'data:  {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
    assert relay_bytes(relay, raw) == raw
    assert relay.delivered_bytes == 2
