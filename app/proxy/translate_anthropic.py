"""OpenAI Chat Completions <-> Anthropic Messages, for Claude models on `/v1/chat/completions`.

Requests are translated up front (`ChatToMessages.validate`): anything the Messages API cannot
honour is a 400 naming the parameter, never silently dropped. Answers (JSON or SSE) come back as
`chat.completion` / `chat.completion.chunk` objects with `usage.cost` in credits.

Ignored on purpose (harmless here): `user`, `safety_identifier` (the gateway sends its own opaque
id), `metadata`, `store`, `service_tier`, the `prompt_cache_*` hints and `stream_options` other than
`include_usage`. `max_tokens`/`max_completion_tokens` arrive as the gateway's `output_limit`.

The first half of this module holds the OpenAI-side helpers that `translate_gemini` shares:
parameter checks, content-part parsing, the chunk writer and the usage block.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Callable

from app.proxy.errors import OPENAI, ProxyError, error_body
from app.proxy.metering import PricedModel, Usage, merge_anthropic_usage, usage_from_anthropic
from app.proxy.openai import cost_in_credits, validate_chat, wants_usage
from app.proxy.relay import EventRelay
from app.proxy.sse import Event, frame
from app.proxy.upstream import UpstreamCall

MESSAGES_PATH = "/v1/messages"
DONE_FRAME = b"data: [DONE]\n\n"

# --- shared: request checks ---------------------------------------------------------------------


def obj(value: object) -> dict:
    """The value when it is a JSON object, else {} (malformed input never raises past here)."""
    return value if isinstance(value, dict) else {}


def invalid(param: str, message: str) -> ProxyError:
    return ProxyError("invalid_request", message, param=param)


def is_unset(name: str, value: object) -> bool:
    """True when a parameter holds its no-op default (None, false, 0, {}, [] or ["text"])."""
    if value is None:
        return True
    if value is False or value == {} or value == []:
        return True
    if name in ("presence_penalty", "frequency_penalty", "top_logprobs"):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == 0
    if name == "modalities":
        return value == ["text"]
    if name == "reasoning_effort":
        return value == "none"
    return False


def refuse_set(body: dict, reasons: dict[str, str], provider: str) -> None:
    """A 400 for the first parameter in `reasons` that the request actually sets."""
    for name, reason in reasons.items():
        if name in body and not is_unset(name, body[name]):
            raise invalid(name, f"'{name}' is not supported for {provider} models: {reason}.")


def number(body: dict, name: str, low: float, high: float, provider: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(name, f"'{name}' must be a number.")
    if not low <= value <= high:
        raise invalid(name, f"'{name}' must be between {low:g} and {high:g} for {provider} models.")
    return value


def positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid(name, f"'{name}' must be a positive integer.")
    return value


def stop_sequences(body: dict) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise invalid("stop", "'stop' must be a string or an array of strings.")
    stop = [s for s in stop if s]
    return stop or None


def function_tools(body: dict) -> list[dict]:
    """The request's function tools as [{name, description, parameters}], checked."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools", "'tools' must be an array.")
    result = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise invalid(param, f"Only function tools are supported here, not {kind!r}.")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid(f"{param}.function.name", "Each function tool needs a 'name'.")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(f"{param}.function.parameters", "'parameters' must be a JSON Schema.")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{param}.function.description", "'description' must be a string.")
        result.append(
            {"name": function["name"], "description": description, "parameters": parameters}
        )
    return result


def tool_choice(body: dict, tools: list[dict]) -> tuple[str | None, str | None, list[dict]]:
    """(mode, forced function name, tools offered); mode is auto, none, required or function.

    `allowed_tools` narrows the offered tools to the listed functions.
    """
    choice = body.get("tool_choice")
    if choice is None:
        return None, None, tools
    names = [tool["name"] for tool in tools]
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid("tool_choice", "'tool_choice' must be auto, none, required or a tool.")
        if choice == "required" and not tools:
            raise invalid("tool_choice", "'tool_choice' is 'required' but no tools were given.")
        return choice, None, tools
    if not isinstance(choice, dict):
        raise invalid("tool_choice", "'tool_choice' must be a string or an object.")
    kind = choice.get("type")
    if kind == "function":
        name = obj(choice.get("function")).get("name")
        if name not in names:
            raise invalid("tool_choice", f"'tool_choice' names {name!r}, which is not in 'tools'.")
        return "function", name, tools
    if kind == "allowed_tools":
        allowed = obj(choice.get("allowed_tools"))
        mode = allowed.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise invalid("tool_choice", "'allowed_tools.mode' must be auto or required.")
        wanted = []
        entries = allowed.get("tools")
        for entry in entries if isinstance(entries, list) else []:
            name = obj(obj(entry).get("function")).get("name") or obj(entry).get("name")
            if name not in names:
                raise invalid("tool_choice", f"'allowed_tools' names {name!r}, not in 'tools'.")
            wanted.append(name)
        if not wanted:
            raise invalid("tool_choice", "'allowed_tools.tools' must list at least one tool.")
        return mode, None, [tool for tool in tools if tool["name"] in wanted]
    raise invalid("tool_choice", f"'tool_choice' of type {kind!r} is not supported here.")


def tool_call_list(message: dict, i: int) -> list[dict]:
    """An assistant message's tool calls as [{id, name, input, extra}], arguments parsed."""
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise invalid(f"messages[{i}].tool_calls", "'tool_calls' must be an array.")
    result = []
    for j, call in enumerate(calls):
        param = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise invalid(param, "Only function tool calls are supported here.")
        function = obj(call.get("function"))
        if not isinstance(call.get("id"), str) or not isinstance(function.get("name"), str):
            raise invalid(param, "Each tool call needs an 'id' and a 'function.name'.")
        arguments = function.get("arguments")
        if arguments in (None, ""):
            parsed = {}
        else:
            try:
                parsed = json.loads(arguments) if isinstance(arguments, str) else None
            except ValueError:
                parsed = None
        if not isinstance(parsed, dict):
            raise invalid(
                f"{param}.function.arguments", "'arguments' must be a JSON object, as a string."
            )
        result.append(
            {
                "id": call["id"],
                "name": function["name"],
                "input": parsed,
                "extra": call.get("extra_content") or {},
            }
        )
    return result


def content_parts(content: object, param: str) -> list[dict]:
    """A message's content as a list of part objects (a string becomes one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(param, "'content' must be a string or an array of content parts.")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"{param}[{j}]", "Each content part must be an object with a 'type'.")
        if part["type"] in ("text", "refusal"):
            key = part["type"]
            if not isinstance(part.get(key), str):
                raise invalid(f"{param}[{j}].{key}", f"'{key}' must be a string.")
    return content


def text_only(content: object, param: str) -> list[dict]:
    """Text parts only (system, developer, tool and assistant content); refusals read as text."""
    parts = []
    for j, part in enumerate(content_parts(content, param)):
        if part["type"] not in ("text", "refusal"):
            raise invalid(f"{param}[{j}]", f"A {part['type']!r} part is not allowed here.")
        parts.append({**part, "type": "text", "text": part[part["type"]]})
    return parts


_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[^;,]*)*),(.*)$", re.DOTALL)


def parse_data_url(url: str, param: str) -> tuple[str, str] | None:
    """('mime/type', base64 data) for a base64 data: URL; None for anything else."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if not match or ";base64" not in match.group(2) or not match.group(1):
        raise invalid(param, "A data: URL must look like 'data:<mime type>;base64,<data>'.")
    return match.group(1).lower(), match.group(3)


def is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def file_payload(part: dict, param: str) -> tuple[str, str]:
    """('mime/type', base64 data) of an OpenAI `file` part sent inline."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise invalid(f"{param}.file", "A file part needs a 'file' object.")
    if file.get("file_id"):
        raise invalid(
            f"{param}.file.file_id", "Uploaded file ids cannot be used here; send 'file_data'."
        )
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise invalid(f"{param}.file.file_data", "A file part needs 'file_data'.")
    parsed = parse_data_url(data, f"{param}.file.file_data")
    if parsed:
        return parsed
    filename = file.get("filename")
    mime = mime_from_name(filename if isinstance(filename, str) else "")
    if mime is None:
        raise invalid(
            f"{param}.file.file_data",
            "Send 'file_data' as a data: URL, or name the file with a known extension.",
        )
    return mime, data


MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "html": "text/html",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "aiff": "audio/aiff",
    "mp4": "video/mp4",
    "mpeg": "video/mpeg",
    "mov": "video/mov",
    "avi": "video/avi",
    "webm": "video/webm",
    "wmv": "video/wmv",
    "3gp": "video/3gpp",
}


def mime_from_name(name: str) -> str | None:
    path = name.split("?", 1)[0].split("#", 1)[0]
    stem = path.rsplit("/", 1)[-1]
    if "." not in stem:
        return None
    return MIME_BY_EXTENSION.get(stem.rsplit(".", 1)[1].lower())


def image_url_of(part: dict, param: str) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid(f"{param}.image_url", "An image_url part needs 'image_url.url'.")
    return url


def check_messages(body: dict) -> list[dict]:
    # messages is a non-empty array of objects, stream, limits, n; and nothing the catalogue
    # cannot price (web_search_options, hosted tools: openai.refuse_unpriceable_chat).
    validate_chat(body)
    for i, message in enumerate(body["messages"]):
        role = message.get("role")
        if role == "function":
            raise invalid(
                f"messages[{i}].role", "The 'function' role is deprecated: use 'tool' messages."
            )
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise invalid(f"messages[{i}].role", f"Unknown message role {role!r}.")
    return body["messages"]


def merge_turns(turns: list[dict], key: str) -> list[dict]:
    """Join consecutive turns of the same role (the providers want them alternating)."""
    merged: list[dict] = []
    for turn in turns:
        if not turn[key]:
            continue
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1][key] = merged[-1][key] + turn[key]
        else:
            merged.append({"role": turn["role"], key: list(turn[key])})
    return merged


# --- shared: the OpenAI side of answers ---------------------------------------------------------


def openai_usage(model: PricedModel, usage: Usage) -> dict:
    """OpenAI's usage block: prompt_tokens counts every prompt-side token, completion_tokens
    every output token (reasoning included), and `cost` is in credits."""
    prompt = usage.input + usage.cache_read + usage.cache_write_5m + usage.cache_write_1h
    details = {"cached_tokens": usage.cache_read}
    if usage.cache_write_5m or usage.cache_write_1h:
        details["cache_write_tokens"] = usage.cache_write_5m + usage.cache_write_1h
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt + usage.output,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        "cost": cost_in_credits(model, usage),
    }


def error_frame(condition: str, message: str) -> bytes:
    """An in-stream error in OpenAI's form (the openai SDK raises on it)."""
    return frame(error_body(ProxyError(condition, message), OPENAI))


def completion_id(upstream_id: object) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return f"chatcmpl-{upstream_id}"
    return f"chatcmpl-{secrets.token_hex(12)}"


class ChunkWriter:
    """Builds `chat.completion.chunk` frames that share one id and created time."""

    def __init__(self, model: PricedModel):
        self.model = model
        self.id = completion_id(None)
        self.created = int(time.time())

    def _chunk(self, choices: list, **extra) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.model_id,
            "choices": choices,
            **extra,
        }
        return frame(chunk)

    def delta(self, index: int, delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice])

    def role(self, index: int = 0) -> bytes:
        return self.delta(index, {"role": "assistant", "content": ""})

    def content(self, index: int, text: str) -> bytes:
        return self.delta(index, {"content": text})

    def tool_start(self, index: int, position: int, call_id: str, name: str, **extra) -> bytes:
        call = {
            "index": position,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
            **extra,
        }
        return self.delta(index, {"tool_calls": [call]})

    def tool_arguments(self, index: int, position: int, arguments: str) -> bytes:
        return self.delta(
            index, {"tool_calls": [{"index": position, "function": {"arguments": arguments}}]}
        )

    def finish(self, index: int, reason: str) -> bytes:
        return self.delta(index, {}, reason)

    def usage(self, usage: dict) -> bytes:
        return self._chunk([], usage=usage)


def completion_body(
    model: PricedModel, upstream_id: object, choices: list[dict], usage: Usage | None
) -> dict:
    body = {
        "id": completion_id(upstream_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model.model_id,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = openai_usage(model, usage)
    return body


def assistant_choice(index: int, text: str | None, tool_calls: list[dict], finish: str) -> dict:
    message: dict = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


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
