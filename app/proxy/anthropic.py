"""Anthropic Messages, passed through as sent (the native `/anthropic` route).

Added on the way up: `max_tokens` when the client set none, and `metadata.user_id` (the opaque
per-account id). Usage comes from `message_start`, then from `message_delta`, whose counts are
cumulative and replace the earlier ones. Refused before any hold: any tool but a plain custom
tool (server tools such as web search are billed apart from the tokens; errors.UNPRICEABLE).
"""

from __future__ import annotations

from app.proxy.errors import ANTHROPIC, ProxyError, unpriceable
from app.proxy.metering import (
    PricedModel,
    delivered_json_bytes,
    merge_anthropic_usage,
    usage_from_anthropic,
)
from app.proxy.relay import BaseRelay, StringValues, is_object
from app.proxy.sse import json_object, raw_frame

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# A custom tool (run by the client, billed as tokens) has no `type` or type "custom". Any other
# type is an Anthropic-defined tool; server tools by their type's prefix -> errors.UNPRICEABLE.
CUSTOM_TOOL_TYPES = (None, "custom")
SERVER_TOOL_FEATURES = {
    "web_search_": "web_search",
    "code_execution_": "code_execution",
}


def refuse_server_tools(body: dict) -> None:
    """A 400 for the first tool that is not a plain custom tool (DESIGN.md, "Money")."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in CUSTOM_TOOL_TYPES:
            continue
        feature = "provider_tool"
        for prefix, name in SERVER_TOOL_FEATURES.items():
            if isinstance(kind, str) and kind.startswith(prefix):
                feature = name
        raise unpriceable(feature, f"tools.{i}.type: {kind!r}")


def validate_messages(body: dict) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError("invalid_request", "messages: must be a non-empty array.")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ProxyError("invalid_request", "stream: must be a boolean.")
    output_limit(body)
    refuse_server_tools(body)


def output_limit(body: dict) -> int | None:
    value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProxyError("invalid_request", "max_tokens: must be a positive integer.")
    return value


def upstream_body(body: dict, model: PricedModel, *, limit: int | None, opaque_user: str) -> dict:
    upstream = dict(body)
    upstream["model"] = model.model_id
    if limit is not None:
        upstream["max_tokens"] = limit
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    upstream["metadata"] = {**metadata, "user_id": opaque_user}
    return upstream


def forwarded_headers(headers) -> dict:
    return {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}


# Events parsed: those carrying usage, and any without an `event:` line (its type is in the JSON).
MESSAGES_PARSED = frozenset([b"message_start", b"message_delta", None])
MESSAGES_TEXT = StringValues("text", "partial_json", "thinking")


class MessagesRelay(BaseRelay):
    """Anthropic Messages relayed to an Anthropic client: events pass as they came."""

    dialect = ANTHROPIC

    def __init__(self, model: PricedModel):
        super().__init__(model)
        self.report: dict = {}

    def _take(self, report: dict, *, final: bool) -> None:
        self.report = merge_anthropic_usage(self.report, report)
        self.usage = usage_from_anthropic(self.report)
        self.usage_complete = self.usage_complete or final

    def response_body(self, upstream: dict) -> dict:
        if isinstance(upstream.get("usage"), dict):
            self._take(upstream["usage"], final=True)
        for block in upstream.get("content") or []:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                self.delivered_bytes += len(block["text"].encode())
            elif block.get("type") == "tool_use" and "input" in block:
                self.delivered_bytes += delivered_json_bytes(block["input"])
        self.finished = True
        return upstream

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        if not is_object(data):
            return b""
        if name in MESSAGES_PARSED:
            payload = json_object(data)
            if payload is None:
                return b""
            kind = payload.get("type")
            name = kind.encode() if isinstance(kind, str) else name
            if kind == "message_start":
                usage = (payload.get("message") or {}).get("usage")
                if isinstance(usage, dict):
                    self._take(usage, final=False)
            elif kind == "message_delta" and isinstance(payload.get("usage"), dict):
                self._take(payload["usage"], final=True)
        if name == b"content_block_delta":
            self.delivered_bytes += MESSAGES_TEXT.utf8_length(data)
        elif name == b"message_stop":
            self.finished = True
        elif name == b"error":
            self.failed = True
        return raw_frame(data, name)
