"""OpenAI Chat Completions <-> Anthropic Messages, for Claude models on `/v1/chat/completions`.

Requests are translated up front (`ChatToMessages.validate`): anything the Messages API cannot
honour is a 400 naming the parameter, never silently dropped. Answers (JSON or SSE) come back as
`chat.completion` / `chat.completion.chunk` objects with `usage.cost` in credits.

Ignored on purpose (harmless here): `user`, `safety_identifier` (the gateway sends its own opaque
id), `metadata`, `store`, `service_tier`, the `prompt_cache_*` hints and `stream_options` other than
`include_usage`. `max_tokens`/`max_completion_tokens` arrive as the gateway's `output_limit`.

The OpenAI-side helpers both translators use are in `translate_chat`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable

from app.proxy.metering import PricedModel, merge_anthropic_usage, usage_from_anthropic
from app.proxy.openai import wants_usage
from app.proxy.relay import EventRelay
from app.proxy.sse import DONE_FRAME, Event
from app.proxy.translate_chat import (
    ChunkWriter,
    assistant_choice,
    check_messages,
    completion_body,
    completion_id,
    content_parts,
    error_frame,
    file_payload,
    function_tools,
    image_url_of,
    invalid,
    is_web_url,
    merge_turns,
    number,
    obj,
    openai_usage,
    parse_data_url,
    positive_int,
    refuse_set,
    stop_sequences,
    text_only,
    tool_call_list,
    tool_choice,
)
from app.proxy.upstream import UpstreamCall

MESSAGES_PATH = "/v1/messages"

# --- Anthropic requests -------------------------------------------------------------------------

ANTHROPIC_REFUSED = {
    "logprobs": "Anthropic returns no log probabilities",
    "top_logprobs": "Anthropic returns no log probabilities",
    "logit_bias": "Anthropic has no token biasing",
    "presence_penalty": "Anthropic has no presence penalty",
    "frequency_penalty": "Anthropic has no frequency penalty",
    "seed": "Anthropic has no seeded sampling",
    "audio": "Anthropic models produce no audio",
    "modalities": "Anthropic models produce text only",
    "prediction": "Anthropic has no predicted outputs",
    "verbosity": "Anthropic has no verbosity setting",
    "reasoning_effort": "extended thinking is offered on the /anthropic/v1/messages route",
    "moderation": "Anthropic has no moderation option",
    "functions": "use 'tools'",
    "function_call": "use 'tool_choice'",
}
ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def anthropic_tool_id(call_id: str) -> str:
    """Anthropic accepts tool ids of [a-zA-Z0-9_-]; map others the same way on both sides."""
    return _TOOL_ID_UNSAFE.sub("_", call_id) or "call"


def _cache_control(block: dict, part: dict, param: str) -> dict:
    control = part.get("cache_control")
    if control is not None:
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            raise invalid(
                f"{param}.cache_control", "'cache_control' must be {'type': 'ephemeral'}."
            )
        block["cache_control"] = control
    return block


def _anthropic_text_blocks(parts: list[dict], param: str) -> list[dict]:
    return [
        _cache_control({"type": "text", "text": part["text"]}, part, f"{param}[{j}]")
        for j, part in enumerate(parts)
        if part["text"]
    ]


def _anthropic_user_blocks(content: object, param: str) -> list[dict]:
    blocks = []
    for j, part in enumerate(content_parts(content, param)):
        where = f"{param}[{j}]"
        kind = part["type"]
        if kind == "text":
            if part["text"]:
                blocks.append(_cache_control({"type": "text", "text": part["text"]}, part, where))
        elif kind == "image_url":
            url = image_url_of(part, where)
            data = parse_data_url(url, f"{where}.image_url.url")
            if data:
                if data[0] not in ANTHROPIC_IMAGE_TYPES:
                    raise invalid(
                        f"{where}.image_url.url",
                        f"Anthropic accepts JPEG, PNG, GIF and WebP images, not {data[0]}.",
                    )
                source = {"type": "base64", "media_type": data[0], "data": data[1]}
            elif is_web_url(url):
                source = {"type": "url", "url": url}
            else:
                raise invalid(f"{where}.image_url.url", "Images must be data: or https URLs.")
            blocks.append(_cache_control({"type": "image", "source": source}, part, where))
        elif kind == "file":
            mime, data = file_payload(part, where)
            if mime == "application/pdf":
                source = {"type": "base64", "media_type": mime, "data": data}
            elif mime == "text/plain":
                try:
                    text = base64.b64decode(data, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise invalid(
                        f"{where}.file.file_data", "The file is not base64-encoded UTF-8 text."
                    ) from None
                source = {"type": "text", "media_type": mime, "data": text}
            else:
                raise invalid(
                    f"{where}.file", f"Anthropic accepts PDF and plain-text files, not {mime}."
                )
            blocks.append(_cache_control({"type": "document", "source": source}, part, where))
        else:
            raise invalid(where, f"Content parts of type {kind!r} are not supported for Anthropic.")
    return blocks


def _anthropic_tool_result(message: dict, i: int) -> dict:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"messages[{i}].tool_call_id", "A tool message needs a 'tool_call_id'.")
    content = message.get("content")
    block: dict = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
    if isinstance(content, str):
        block["content"] = content
    else:
        texts = _anthropic_text_blocks(
            text_only(content, f"messages[{i}].content"), f"messages[{i}].content"
        )
        if texts:
            block["content"] = texts
    return block


def anthropic_messages(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """(system blocks, alternating messages) for the Messages API."""
    system: list[dict] = []
    turns: list[dict] = []
    for i, message in enumerate(messages):
        role = message["role"]
        param = f"messages[{i}].content"
        if role in ("system", "developer"):
            system += _anthropic_text_blocks(text_only(message.get("content"), param), param)
        elif role == "user":
            if message.get("content") is None:
                raise invalid(param, "A user message needs 'content'.")
            turns.append(
                {"role": "user", "content": _anthropic_user_blocks(message["content"], param)}
            )
        elif role == "assistant":
            if message.get("audio"):
                raise invalid(f"messages[{i}].audio", "Audio replies cannot be sent to Anthropic.")
            blocks = _anthropic_text_blocks(text_only(message.get("content"), param), param)
            for call in tool_call_list(message, i):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": anthropic_tool_id(call["id"]),
                        "name": call["name"],
                        "input": call["input"],
                    }
                )
            turns.append({"role": "assistant", "content": blocks})
        else:  # tool
            turns.append({"role": "user", "content": [_anthropic_tool_result(message, i)]})
    merged = merge_turns(turns, "content")
    for turn in merged:
        if turn["role"] == "user":
            # Tool results must open the user turn that follows the assistant's tool calls.
            results = [b for b in turn["content"] if b["type"] == "tool_result"]
            turn["content"] = results + [b for b in turn["content"] if b["type"] != "tool_result"]
    return system, merged


class ChatToMessages:
    """An OpenAI Chat Completions request for a Claude model, as an Anthropic Messages call."""

    def __init__(self, body: dict, model: PricedModel):
        self.body = body
        self.model = model
        self._native: dict | None = None

    def validate(self) -> None:
        body = self.body
        messages = check_messages(body)
        if body.get("n") not in (None, 1):
            raise invalid("n", "'n' must be 1 for Anthropic models: they return one choice.")
        refuse_set(body, ANTHROPIC_REFUSED, "Anthropic")
        response_format = body.get("response_format")
        if response_format is not None:
            kind = response_format.get("type") if isinstance(response_format, dict) else None
            if kind != "text":
                raise invalid(
                    "response_format",
                    f"'response_format' {kind!r} is not supported for Anthropic models: they "
                    "have no JSON mode. Ask for JSON in the prompt, or use a forced tool call.",
                )
        native: dict = {"model": self.model.model_id}
        system, turns = anthropic_messages(messages)
        if not turns:
            raise invalid("messages", "'messages' needs a user or assistant message for Anthropic.")
        if system:
            native["system"] = system
        native["messages"] = turns
        temperature = number(body, "temperature", 0, 1, "Anthropic")
        if temperature is not None:
            native["temperature"] = temperature
        top_p = number(body, "top_p", 0, 1, "Anthropic")
        if top_p is not None:
            native["top_p"] = top_p
        top_k = positive_int(body, "top_k")
        if top_k is not None:
            native["top_k"] = top_k
        stop = stop_sequences(body)
        if stop:
            native["stop_sequences"] = stop
        self._tools(native)
        self._native = native

    def _tools(self, native: dict) -> None:
        body = self.body
        mode, forced, tools = tool_choice(body, function_tools(body))
        parallel = body.get("parallel_tool_calls")
        if parallel is not None and not isinstance(parallel, bool):
            raise invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean.")
        if not tools:
            return
        native["tools"] = [
            {
                "name": tool["name"],
                **({"description": tool["description"]} if tool["description"] else {}),
                "input_schema": tool["parameters"] or {"type": "object", "properties": {}},
            }
            for tool in tools
        ]
        choice: dict | None = None
        if mode == "none":
            choice = {"type": "none"}
        elif mode == "required":
            choice = {"type": "any"}
        elif mode == "function":
            choice = {"type": "tool", "name": forced}
        elif mode == "auto" or parallel is False:
            choice = {"type": "auto"}
        if choice is not None and parallel is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        if choice is not None:
            native["tool_choice"] = choice

    def upstream_call(self, *, output_limit: int, opaque_user: str) -> UpstreamCall:
        if self._native is None:
            self.validate()
        stream = bool(self.body.get("stream"))
        native = dict(self._native)
        native["max_tokens"] = output_limit
        native["metadata"] = {"user_id": opaque_user}
        native["stream"] = stream
        return UpstreamCall(provider="anthropic", path=MESSAGES_PATH, body=native, stream=stream)

    def relay(self) -> MessagesToChat:
        return MessagesToChat(self.model, client_wants_usage=wants_usage(self.body))


# --- Anthropic answers --------------------------------------------------------------------------

ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
ANTHROPIC_ERROR_CONDITIONS = {
    "invalid_request_error": "invalid_request",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limited",
    "timeout_error": "upstream_timeout",
}


def anthropic_finish(stop_reason: object) -> str:
    return ANTHROPIC_FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _block_index(payload: dict) -> int | None:
    index = payload.get("index")
    return index if isinstance(index, int) else None


def _arguments(value: object) -> str:
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


class MessagesToChat(EventRelay):
    """Relays an Anthropic Messages answer to an OpenAI Chat Completions client."""

    def __init__(self, model: PricedModel, *, client_wants_usage: bool):
        super().__init__(model)
        self.client_wants_usage = client_wants_usage
        self.report: dict = {}
        self.writer = ChunkWriter(model)
        self._started = False
        self._id_set = False
        self._tool_positions: dict[int, int] = {}  # content block index -> tool call index
        self._finish_sent = False

    def _take(self, report: dict, *, final: bool) -> None:
        if not isinstance(report.get("cache_creation", {}), dict):
            report = {k: v for k, v in report.items() if k != "cache_creation"}
        self.report = merge_anthropic_usage(self.report, report)
        self.usage = usage_from_anthropic(self.report)
        self.usage_complete = self.usage_complete or final

    def response_body(self, upstream: dict) -> dict:
        if not isinstance(upstream, dict) or not isinstance(upstream.get("content"), list):
            raise ValueError("not an Anthropic message")
        if isinstance(upstream.get("usage"), dict):
            self._take(upstream["usage"], final=True)
        texts: list[str] = []
        tool_calls = []
        for block in upstream["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                arguments = _arguments(block.get("input"))
                tool_calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
                self.delivered_bytes += len(arguments.encode())
        text = "".join(texts)
        self.delivered_bytes += len(text.encode())
        finish = anthropic_finish(upstream.get("stop_reason"))
        choice = assistant_choice(0, text if texts else None, tool_calls, finish)
        self.finished = True
        return completion_body(self.model, upstream.get("id"), [choice], self.usage)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self.writer.role(0)]

    def on_event(self, event: Event) -> list[bytes]:
        payload = event.json_object()
        if payload is None:
            return []
        kind = payload.get("type") or event.event
        if not isinstance(kind, str):
            return []
        handler: Callable[[dict], list[bytes]] | None = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }.get(kind)
        return handler(payload) if handler else []

    def _message_start(self, payload: dict) -> list[bytes]:
        message = obj(payload.get("message"))
        if not self._started and not self._id_set:
            self.writer.id = completion_id(message.get("id"))
            self._id_set = True
        if isinstance(message.get("usage"), dict):
            self._take(message["usage"], final=False)
        return self._start()

    def _block_start(self, payload: dict) -> list[bytes]:
        frames = self._start()
        block = obj(payload.get("content_block"))
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            frames += self._text(block["text"])
        elif block.get("type") == "tool_use":
            position = len(self._tool_positions)
            self._tool_positions[_block_index(payload)] = position
            frames.append(self.writer.tool_start(0, position, block.get("id"), block.get("name")))
            # Anthropic streams arguments as input_json_delta; `input` here is {} by design.
            if block.get("input"):
                frames += self._arguments(position, _arguments(block["input"]))
        return frames

    def _text(self, text: str) -> list[bytes]:
        self.delivered_bytes += len(text.encode())
        return [self.writer.content(0, text)]

    def _arguments(self, position: int, piece: str) -> list[bytes]:
        self.delivered_bytes += len(piece.encode())
        return [self.writer.tool_arguments(0, position, piece)]

    def _block_delta(self, payload: dict) -> list[bytes]:
        frames = self._start()
        delta = obj(payload.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            frames += self._text(delta["text"])
        elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            position = self._tool_positions.get(_block_index(payload))
            if position is not None and delta["partial_json"]:
                frames += self._arguments(position, delta["partial_json"])
        # thinking_delta and signature_delta are not content: dropped (billed as output).
        return frames

    def _message_delta(self, payload: dict) -> list[bytes]:
        if isinstance(payload.get("usage"), dict):
            self._take(payload["usage"], final=True)
        stop_reason = obj(payload.get("delta")).get("stop_reason")
        if stop_reason is None or self._finish_sent:
            return []
        self._finish_sent = True
        return [*self._start(), self.writer.finish(0, anthropic_finish(stop_reason))]

    def _message_stop(self, payload: dict) -> list[bytes]:
        self.finished = True
        return []

    def _error(self, payload: dict) -> list[bytes]:
        error = obj(payload.get("error"))
        kind = error.get("type")
        message = error.get("message") or "The provider reported an error."
        condition = ANTHROPIC_ERROR_CONDITIONS.get(kind if isinstance(kind, str) else "")
        condition = condition or "upstream_error"
        self.failed = True
        return [error_frame(condition, f"Anthropic: {message}")]

    def on_end(self) -> list[bytes]:
        if not self.finished:
            return []
        frames = self._start()
        if not self._finish_sent:
            self._finish_sent = True
            frames.append(self.writer.finish(0, "stop"))
        if self.client_wants_usage and self.usage is not None:
            frames.append(self.writer.usage(openai_usage(self.model, self.usage)))
        frames.append(DONE_FRAME)
        return frames
