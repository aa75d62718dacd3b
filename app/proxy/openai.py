"""OpenAI and xAI: Chat Completions and the Responses API, passed through as sent.

Only three things change on the way up: streams always ask for usage, an output limit is set when
the client set none, and the provider gets the opaque per-account id instead of anything of the
customer's. On the way down, the usage chunk the client did not ask for is removed, and usage
carries `cost` in credits. Refused before any hold, as the catalogue cannot price them
(errors.UNPRICEABLE): `web_search_options`, xAI `search_parameters`, tools other than function and
custom ones, service tiers other than auto/default, and prompt-cache lifetimes other than 30
minutes and 12 hours (prompt_cache_options.ttl, which also decides how a Chat Completions
request's cache writes bill: its usage does not say).
"""

from __future__ import annotations

import re

from app.proxy.errors import ProxyError, unpriceable
from app.proxy.metering import (
    PricedModel,
    Usage,
    cost_of,
    delivered_json_bytes,
    usage_from_openai,
    usage_from_responses,
)
from app.proxy.relay import BaseRelay, StringValues, is_object
from app.proxy.sse import DONE_FRAME, frame, json_object, raw_frame

CHAT_PATH = "/chat/completions"
RESPONSES_PATH = "/responses"
RESPONSES_TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def cost_in_credits(model: PricedModel, usage: Usage) -> float:
    """`usage.cost` as OpenRouter sends it: a JSON number of credits."""
    cost, _ = cost_of(model, usage)
    return round(cost / 1_000_000_000, 9)


# Tool types that run in the client's application and bill as tokens; any other type runs on the
# provider's side (DESIGN.md, "Money": what the catalogue cannot price is refused).
CLIENT_TOOL_TYPES = ("function", "custom")
# Hosted tool types (OpenAI and xAI) -> errors.UNPRICEABLE feature; others are "provider_tool".
HOSTED_TOOL_FEATURES = {
    "x_search": "web_search",
    "file_search": "file_search",
    "collections_search": "file_search",
    "code_interpreter": "code_execution",
    "code_execution": "code_execution",
    "image_generation": "image_generation",
}
# The service tiers billed at the catalogue's prices.
CATALOGUE_SERVICE_TIERS = (None, "auto", "default")
# Prompt-cache lifetimes (prompt_cache_options.ttl) -> whether its writes bill at the dearer
# long-lifetime rate (the catalogue's cache_write_1h class); 30 minutes is the default.
CACHE_TTLS = {None: False, "30m": False, "12h": True}


def _hosted_tool_feature(kind: object) -> str:
    if not isinstance(kind, str):
        return "provider_tool"
    if kind.startswith("web_search"):
        return "web_search"  # web_search, web_search_preview, web_search_preview_2025_03_11
    return HOSTED_TOOL_FEATURES.get(kind, "provider_tool")


def refuse_hosted_tools(body: dict) -> None:
    """A 400 for the first tool of a type other than function or custom (one with no type is
    left to the provider, which refuses it)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind is None or kind in CLIENT_TOOL_TYPES:
            continue
        raise unpriceable(
            _hosted_tool_feature(kind), f"'tools[{i}]' of type {kind!r}", param=f"tools[{i}]"
        )


def refuse_service_tier(body: dict) -> None:
    """Only the default tier is billed at the catalogue's prices (priority and flex are not)."""
    tier = body.get("service_tier")
    if tier not in CATALOGUE_SERVICE_TIERS:
        raise unpriceable("service_tier", f"'service_tier' {tier!r}", param="service_tier")


def long_cache_writes(body: dict) -> bool:
    """Whether the request's prompt-cache writes are 12-hour ones; a lifetime the catalogue has
    no price for is refused (400), as is prompt_cache_options that is not an object."""
    options = body.get("prompt_cache_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ProxyError(
            "invalid_request",
            "'prompt_cache_options' must be an object.",
            param="prompt_cache_options",
        )
    ttl = options.get("ttl")
    if not isinstance(ttl, str | None) or ttl not in CACHE_TTLS:
        raise unpriceable(
            "cache_ttl", f"'prompt_cache_options.ttl' {ttl!r}", param="prompt_cache_options.ttl"
        )
    return CACHE_TTLS[ttl]


def refuse_unpriceable_chat(body: dict) -> None:
    """Chat Completions fields the catalogue cannot price, for every provider's models."""
    if body.get("web_search_options") is not None:
        # Present at all, even {}, means "search the web".
        raise unpriceable("web_search", "'web_search_options'", param="web_search_options")
    search = body.get("search_parameters")
    if search is not None and not (isinstance(search, dict) and search.get("mode") == "off"):
        raise unpriceable(
            "web_search", "'search_parameters' (xAI Live Search)", param="search_parameters"
        )
    refuse_hosted_tools(body)


def _positive_int(body: dict, name: str, *, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProxyError("invalid_request", f"'{name}' must be a positive integer.", param=name)
    if maximum is not None and value > maximum:
        raise ProxyError("invalid_request", f"'{name}' must be at most {maximum}.", param=name)
    return value


def chat_output_limit(body: dict) -> int | None:
    return _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")


def chat_choices(body: dict) -> int:
    return _positive_int(body, "n", maximum=128) or 1


def validate_chat(body: dict) -> None:
    """The checks the gateway needs to meter safely; the provider validates the rest."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError(
            "invalid_request", "'messages' must be a non-empty array.", param="messages"
        )
    if not all(isinstance(m, dict) for m in messages):
        raise ProxyError("invalid_request", "Each message must be an object.", param="messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ProxyError("invalid_request", "'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ProxyError(
            "invalid_request", "'stream_options' must be an object.", param="stream_options"
        )
    chat_output_limit(body)
    chat_choices(body)
    long_cache_writes(body)
    refuse_unpriceable_chat(body)


def wants_usage(body: dict) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _identify(upstream: dict, provider: str, opaque_user: str) -> None:
    upstream["user"] = opaque_user
    if provider == "openai":
        upstream["safety_identifier"] = opaque_user


def chat_upstream_body(
    body: dict, model: PricedModel, *, output_limit: int | None, opaque_user: str
) -> dict:
    upstream = dict(body)
    upstream["model"] = model.model_id
    if upstream.get("stream"):
        upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if output_limit is not None:
        upstream["max_completion_tokens"] = output_limit
    _identify(upstream, model.provider, opaque_user)
    return upstream


def openai_shaped_error(chunk: dict) -> dict:
    """An in-stream error in OpenAI's shape. xAI sends `{"code": ..., "error": "<text>"}`, which
    the openai SDK cannot read a message from."""
    error = chunk.get("error")
    if isinstance(error, dict):
        return chunk
    return {
        "error": {
            "message": str(error),
            "type": "api_error",
            "code": chunk.get("code") if isinstance(chunk.get("code"), str) else None,
            "param": None,
        }
    }


# Byte tests deciding which chunks are parsed: a usage report (every chunk of a stream that asked
# for usage carries `"usage":null`), an error, and the text that was delivered.
USAGE_REPORT = re.compile(rb'"usage"\s*:\s*\{')
CHAT_TEXT = StringValues("content", "reasoning_content", "arguments")


class ChatRelay(BaseRelay):
    """Chat Completions from OpenAI or xAI, relayed to an OpenAI-dialect client.

    Chunks pass as they came; only the usage chunk and errors are parsed (and rewritten).
    """

    def __init__(
        self, model: PricedModel, *, client_wants_usage: bool, long_cache_writes: bool = False
    ):
        super().__init__(model)
        self.client_wants_usage = client_wants_usage
        self.reasoning_outside = model.provider == "xai"
        self.long_cache_writes = long_cache_writes

    def _usage(self, report: dict) -> Usage:
        return usage_from_openai(
            report,
            reasoning_outside_completion=self.reasoning_outside,
            long_cache_writes=self.long_cache_writes,
        )

    def response_body(self, upstream: dict) -> dict:
        report = upstream.get("usage")
        if isinstance(report, dict):
            self.usage = self._usage(report)
            self.usage_complete = True
            report["cost"] = cost_in_credits(self.model, self.usage)
        for choice in upstream.get("choices") or []:
            message = choice.get("message") or {}
            content = message.get("content")
            if isinstance(content, str):
                self.delivered_bytes += len(content.encode())
            for call in message.get("tool_calls") or []:
                arguments = (
                    (call.get("function") or {}).get("arguments")
                    if isinstance(call, dict)
                    else None
                )
                if arguments is not None:
                    self.delivered_bytes += delivered_json_bytes(arguments)
        self.finished = True
        return upstream

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        if data == b"[DONE]":
            self.finished = True
            return DONE_FRAME
        if not is_object(data):
            return b""
        if b'"error"' in data or USAGE_REPORT.search(data):
            return self._rewrite(data)
        self.delivered_bytes += CHAT_TEXT.utf8_length(data)
        return raw_frame(data)

    def _rewrite(self, data: bytes) -> bytes:
        chunk = json_object(data)
        if chunk is None:
            return b""
        if chunk.get("error"):
            # An in-stream error from the provider: passed on, the stream is not complete.
            self.failed = True
            return frame(openai_shaped_error(chunk))
        report = chunk.get("usage")
        if isinstance(report, dict):
            self.usage = self._usage(report)
            self.usage_complete = True
            if not chunk.get("choices"):
                if not self.client_wants_usage:
                    return b""
                report["cost"] = cost_in_credits(self.model, self.usage)
                return frame(chunk)
            if not self.client_wants_usage:
                chunk["usage"] = None
            else:
                report["cost"] = cost_in_credits(self.model, self.usage)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for value in (delta.get("content"), delta.get("reasoning_content")):
                if isinstance(value, str):
                    self.delivered_bytes += len(value.encode())
            for call in delta.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments")
                if isinstance(arguments, str):
                    self.delivered_bytes += len(arguments.encode())
        return frame(chunk)


# --- Responses API ---------------------------------------------------------------------------


def validate_responses(body: dict) -> None:
    if body.get("background"):
        raise ProxyError(
            "invalid_request",
            "'background' responses are not supported: the gateway could not meter them.",
            param="background",
        )
    if "input" not in body:
        raise ProxyError("invalid_request", "'input' is required.", param="input")
    if not isinstance(body["input"], str | list):
        raise ProxyError("invalid_request", "'input' must be a string or an array.", param="input")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ProxyError("invalid_request", "'stream' must be a boolean.", param="stream")
    responses_output_limit(body)
    long_cache_writes(body)
    refuse_hosted_tools(body)
    refuse_service_tier(body)


def responses_output_limit(body: dict) -> int | None:
    return _positive_int(body, "max_output_tokens")


def responses_upstream_body(
    body: dict, model: PricedModel, *, output_limit: int | None, opaque_user: str
) -> dict:
    upstream = dict(body)
    upstream["model"] = model.model_id
    if output_limit is not None:
        upstream["max_output_tokens"] = output_limit
    _identify(upstream, model.provider, opaque_user)
    return upstream


# Responses events parsed: those that end the stream (they carry the usage), errors, and any
# without an `event:` line (its type is in the JSON).
RESPONSES_PARSED = frozenset(
    [*(kind.encode() for kind in RESPONSES_TERMINAL_EVENTS), b"error", None]
)
RESPONSES_DELTA = StringValues("delta")


class ResponsesRelay(BaseRelay):
    def __init__(self, model: PricedModel, *, long_cache_writes: bool = False):
        super().__init__(model)
        self.long_cache_writes = long_cache_writes

    def _take_usage(self, response: dict) -> None:
        report = response.get("usage")
        if isinstance(report, dict):
            self.usage = usage_from_responses(report, long_cache_writes=self.long_cache_writes)
            self.usage_complete = True
            report["cost"] = cost_in_credits(self.model, self.usage)

    def response_body(self, upstream: dict) -> dict:
        self._take_usage(upstream)
        for item in upstream.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("arguments") is not None:  # a function call's
                self.delivered_bytes += delivered_json_bytes(item["arguments"])
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    self.delivered_bytes += len(part["text"].encode())
        self.finished = True
        return upstream

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        if data == b"[DONE]":
            self.finished = True
            return DONE_FRAME
        if not is_object(data):
            return b""
        if name in RESPONSES_PARSED:
            return self._parsed(name, data)
        if b'"delta"' in data:
            self.delivered_bytes += RESPONSES_DELTA.utf8_length(data)
        return raw_frame(data, name)

    def _parsed(self, name: bytes | None, data: bytes) -> bytes:
        payload = json_object(data)
        if payload is None:
            return b""
        kind = payload.get("type")
        if not isinstance(kind, str) or not kind:
            kind = (name or b"").decode("utf-8", errors="replace")
        if kind in RESPONSES_TERMINAL_EVENTS and isinstance(payload.get("response"), dict):
            self._take_usage(payload["response"])
            self.finished = True
            return frame(payload, kind)  # with usage.cost
        if kind == "error":
            self.failed = True  # passed on; the stream is not complete
        elif isinstance(payload.get("delta"), str):
            self.delivered_bytes += len(payload["delta"].encode())
        return raw_frame(data, kind.encode())
