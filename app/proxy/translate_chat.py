"""The OpenAI Chat Completions side of the translators (`translate_anthropic`, `translate_gemini`).

Requests: parameter checks, content-part parsing and message turns, shared by both translations.
Answers: the `chat.completion` body, the `chat.completion.chunk` writer and the usage block with
`usage.cost` in credits.
"""

from __future__ import annotations

import json
import re
import secrets
import time

from app.proxy.errors import OPENAI, ProxyError, error_body
from app.proxy.gateway import measure_body
from app.proxy.metering import PricedModel, Usage
from app.proxy.openai import cost_in_credits, validate_chat
from app.proxy.sse import frame

# --- requests ---------------------------------------------------------------------


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
            except (ValueError, RecursionError):
                parsed = None
        if not isinstance(parsed, dict):
            raise invalid(
                f"{param}.function.arguments", "'arguments' must be a JSON object, as a string."
            )
        measure_body(parsed)  # sent on as an object: held to the body's nesting and Unicode rules
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


# --- answers ---------------------------------------------------------


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
