"""Fake Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`), exact wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .common import (
    MIDSTREAM_ERROR_AFTER,
    Ctx,
    Frame,
    Reply,
    answer_pieces,
    apply_output_limit,
    count_words,
    example_args,
    fault_chunk_count,
    json_reply,
    new_id,
    split_string,
    sse_data,
    sse_headers,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES = {
    401: "invalid x-api-key",
    404: "model: not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


def error_body(status: int, message: str | None = None) -> dict:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message or _MESSAGES.get(status, kind)},
        "request_id": new_id("req_", 24),
    }


def error_reply(status: int, message: str | None = None) -> Reply:
    headers = [("request-id", new_id("req_", 24))]
    if status == 429:
        headers.append(("retry-after", "7"))
    return json_reply(status, error_body(status, message), headers=headers)


def _block_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                out.append(block["text"])
            elif block.get("type") == "tool_result":
                out += _block_texts(block.get("content"))
    return out


def request_texts(body: dict) -> list[str]:
    texts = _block_texts(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            texts += _block_texts(message.get("content"))
    return texts


def input_tokens(body: dict) -> int:
    return 10 + count_words(request_texts(body))


def _first_tool(body: dict) -> tuple[str, dict] | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and "input_schema" in tool:
            return str(tool.get("name") or "tool"), example_args(tool.get("input_schema"))
    return None


def _validate(body: Any, *, needs_max_tokens: bool) -> str | None:
    if not isinstance(body, dict):
        return "Request body is not valid JSON."
    if not isinstance(body.get("model"), str) or not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    if needs_max_tokens and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    return None


def count_tokens(ctx: Ctx) -> Reply:
    problem = _validate(ctx.body, needs_max_tokens=False)
    if problem:
        return error_reply(400, problem)
    if ctx.d.error:
        return error_reply(ctx.d.error)
    return json_reply(200, {"input_tokens": input_tokens(ctx.body)})


def messages(ctx: Ctx) -> Reply:
    body = ctx.body
    problem = _validate(body, needs_max_tokens=True)
    if problem:
        return error_reply(400, problem)
    d = ctx.d
    if d.error:
        return error_reply(d.error)
    model = body["model"]
    stream = bool(body.get("stream"))
    ctx.call.stream = stream
    prompt = input_tokens(body)
    tool = _first_tool(body) if d.tool else None
    chunks, reasoning, cut = d.chunks, d.reasoning, False
    if tool is None:
        chunks, reasoning, cut = apply_output_limit(chunks, reasoning, body.get("max_tokens"))
    if stream:
        chunks = fault_chunk_count(chunks, d)
    output = 2 * chunks + reasoning  # thinking tokens are inside output_tokens
    stop_reason = "tool_use" if tool else ("max_tokens" if cut else "end_turn")
    cache_write = d.cache_write + d.cache_write_1h
    usage = {
        "input_tokens": prompt,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": d.cached,
        "cache_creation": {
            "ephemeral_5m_input_tokens": d.cache_write,
            "ephemeral_1h_input_tokens": d.cache_write_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }
    mid = new_id("msg_01", 22)
    headers = [("request-id", new_id("req_", 24))]
    if tool:
        name, args = tool
        tool_id = new_id("toolu_01", 22)
        pieces = split_string(json.dumps(args), chunks)
    else:
        pieces = answer_pieces("anthropic", chunks, d.chunks)

    if not stream:
        if tool:
            content: list[dict] = [{"type": "tool_use", "id": tool_id, "name": name, "input": args}]
        else:
            content = [{"type": "text", "text": "".join(pieces)}]
        obj: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if not d.nousage:
            obj["usage"] = usage
        return json_reply(
            200, obj, usage=None if d.nousage else usage, chunks=len(pieces), headers=headers
        )

    start_usage = {**usage, "output_tokens": 1}
    delta_usage = {
        "input_tokens": prompt,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": d.cached,
        "output_tokens": output,
    }

    def event(kind: str, payload: dict) -> bytes:
        return sse_data({"type": kind, **payload}, event=kind)

    def frames() -> Iterator[Frame]:
        message = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not d.nousage:
            message["usage"] = start_usage
        yield Frame(
            event("message_start", {"message": message}),
            usage=None if d.nousage else start_usage,
        )
        if tool:
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
        else:
            block = {"type": "text", "text": ""}
        yield Frame(event("content_block_start", {"index": 0, "content_block": block}))
        yield Frame(sse_data({"type": "ping"}, event="ping"))
        for k, piece in enumerate(pieces):
            if d.midstream_error and k == MIDSTREAM_ERROR_AFTER:
                yield Frame(
                    sse_data(
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                            "request_id": new_id("req_", 24),
                        },
                        event="error",
                    )
                )
                return
            if tool:
                delta = {"type": "input_json_delta", "partial_json": piece}
            else:
                delta = {"type": "text_delta", "text": piece}
            yield Frame(event("content_block_delta", {"index": 0, "delta": delta}), content=True)
        yield Frame(event("content_block_stop", {"index": 0}))
        payload: dict[str, Any] = {"delta": {"stop_reason": stop_reason, "stop_sequence": None}}
        if not d.nousage:
            payload["usage"] = delta_usage
        yield Frame(event("message_delta", payload), usage=None if d.nousage else delta_usage)
        yield Frame(event("message_stop", {}))

    return Reply(status=200, headers=sse_headers() + headers, frames=frames(), stream=True)


def auth_error_reply() -> Reply:
    return error_reply(401)
