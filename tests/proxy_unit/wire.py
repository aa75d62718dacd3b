"""Helpers: feed a relay wire events, and read its frames the way the official openai SDK does."""

from __future__ import annotations

import json

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from app.proxy.sse import Event, parse_stream

TEXT_BLOB = "data:image/png;base64,iVBORw0KGgo="


def events(raw: str) -> list[Event]:
    """Wire text (as the provider sends it) parsed into Events by the gateway's own parser."""
    return list(parse_stream([raw.encode()]))


def run(relay, raw: str) -> list[bytes]:
    frames: list[bytes] = []
    for event in events(raw):
        frames += relay.on_event(event)
    frames += relay.on_end()
    return frames


def payloads(frames: list[bytes]) -> list[dict | str]:
    """Each frame's data: JSON objects, or the string '[DONE]'."""
    out: list[dict | str] = []
    for event in parse_stream(frames):
        assert event.event is None, "chat chunks carry no event: line"
        out.append(event.data if event.data == "[DONE]" else json.loads(event.data))
    return out


def chunks(frames: list[bytes]) -> list[ChatCompletionChunk]:
    """Every frame validated as the SDK's ChatCompletionChunk (the stream must end in [DONE])."""
    data = payloads(frames)
    assert data[-1] == "[DONE]"
    assert "[DONE]" not in data[:-1]
    return [ChatCompletionChunk.model_validate(item) for item in data[:-1]]


def _client(handler) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="ok-test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def sdk_stream(frames: list[bytes], **request) -> list[ChatCompletionChunk]:
    """The frames served to the official SDK's streaming create(); returns what it yields."""
    body = b"".join(frames)

    def handler(_request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    stream = _client(handler).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True, **request
    )
    return list(stream)


def sdk_final(frames: list[bytes]):
    """The SDK's stream helper accumulating the frames into one final ChatCompletion."""
    body = b"".join(frames)

    def handler(_request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with _client(handler).chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "x"}]
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def completion(body: dict) -> ChatCompletion:
    return ChatCompletion.model_validate(body)
