"""Fake OpenAI and xAI: Chat Completions and the Responses API, in their exact wire format."""

from __future__ import annotations

import json
import time
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

# ---------------------------------------------------------------------------------------------
# Errors

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    409: ("invalid_request_error", "conflict", "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 7s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_XAI_CODES: dict[int, str] = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials for the operation",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    409: "The operation was aborted",
    422: "Client specified an invalid argument",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
    504: "The deadline expired before the operation could complete",
}


def error_body(provider: str, status: int, message: str | None = None) -> dict:
    if provider == "xai":
        code = _XAI_CODES.get(status, "Unknown error")
        return {"code": code, "error": message or f"{code} (fake xAI, HTTP {status})"}
    kind, code, default = _OPENAI_ERRORS.get(
        status,
        ("server_error", None, "Server error.")
        if status >= 500
        else ("invalid_request_error", None, "Request failed."),
    )
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


def error_reply(ctx_or_provider: Ctx | str, status: int, message: str | None = None) -> Reply:
    provider = ctx_or_provider if isinstance(ctx_or_provider, str) else ctx_or_provider.provider
    headers = [("x-request-id", new_id("req_", 32))]
    if status == 429:
        headers.append(("retry-after", "7"))
    return json_reply(status, error_body(provider, status, message), headers=headers)


def auth_error_reply(provider: str, realistic: bool) -> Reply:
    if provider == "xai" and realistic:
        # xAI really answers a wrong key with a 400
        return json_reply(
            400,
            {
                "code": _XAI_CODES[400],
                "error": "Incorrect API key provided: xa***ey. You can obtain an API key from "
                "https://console.x.ai.",
            },
        )
    return error_reply(provider, 401)


def _in_stream_error(provider: str) -> dict:
    if provider == "xai":
        return error_body("xai", 500, "Internal error while generating (fake in-stream error)")
    return {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }


# ---------------------------------------------------------------------------------------------
# Request text


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif isinstance(part.get("refusal"), str):
                    out.append(part["refusal"])
    return out


def chat_texts(body: dict) -> list[str]:
    texts: list[str] = []
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            texts += _content_texts(message.get("content"))
    return texts


def responses_texts(body: dict) -> list[str]:
    texts: list[str] = []
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    items = body.get("input")
    if isinstance(items, str):
        texts.append(items)
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict):
                texts += _content_texts(item.get("content"))
                if item.get("type") == "function_call_output" and isinstance(
                    item.get("output"), str
                ):
                    texts.append(item["output"])
    return texts


def _first_chat_tool(body: dict) -> tuple[str, dict] | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            fn = tool["function"]
            return str(fn.get("name") or "tool"), example_args(fn.get("parameters"))
    return None


def _first_responses_tool(body: dict) -> tuple[str, dict] | None:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            return str(tool.get("name") or "tool"), example_args(tool.get("parameters"))
    return None


# ---------------------------------------------------------------------------------------------
# Usage in each provider's semantics


def chat_usage(
    provider: str, prompt: int, cached: int, output: int, reasoning: int, writes: int = 0
) -> dict:
    """prompt = uncached input; `cached` is added on top (and reported inside prompt_tokens), and
    so are OpenAI's prompt-cache `writes` (`cache_write_tokens`, reported only when there are
    some; xAI reports none)."""
    if provider == "xai":
        writes = 0
    prompt_tokens = prompt + cached + writes
    if provider == "xai":
        # xAI: reasoning tokens are NOT inside completion_tokens, but are inside total_tokens
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output,
            "total_tokens": prompt_tokens + output + reasoning,
            "prompt_tokens_details": {
                "text_tokens": prompt_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": cached,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
            "num_sources_used": 0,
        }
    completion = output + reasoning  # OpenAI: reasoning inside completion_tokens
    details = {"cached_tokens": cached, "audio_tokens": 0}
    if writes:
        details["cache_write_tokens"] = writes
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(
    prompt: int, cached: int, output: int, reasoning: int, writes: int = 0, ttl_12h: bool = False
) -> dict:
    """Cache reads and writes both inside input_tokens; `cache_write_tokens` only when some, split
    by lifetime in cache_write_tokens_details (all at the request's: 12 hours with `ttl_12h`)."""
    input_tokens = prompt + cached + writes
    output_tokens = output + reasoning
    details: dict = {"cached_tokens": cached}
    if writes:
        details["cache_write_tokens"] = writes
        details["cache_write_tokens_details"] = {
            "ttl_30m_tokens": 0 if ttl_12h else writes,
            "ttl_12h_tokens": writes if ttl_12h else 0,
        }
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": details,
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def asks_12h_cache(body: dict) -> bool:
    """prompt_cache_options.ttl "12h": the request's cache writes live 12 hours."""
    options = body.get("prompt_cache_options")
    return isinstance(options, dict) and options.get("ttl") == "12h"


def _validate(body: Any, required: tuple[str, ...]) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    for name in required:
        if body.get(name) in (None, "", []):
            return f"Missing required parameter: '{name}'."
    if not isinstance(body.get("model"), str):
        return "Invalid type for 'model': expected a string."
    return None


# ---------------------------------------------------------------------------------------------
# Chat Completions


def chat_completions(ctx: Ctx) -> Reply:
    body = ctx.body
    problem = _validate(body, ("model", "messages"))
    if problem:
        return error_reply(ctx, 400, problem)
    d = ctx.d
    if d.error:
        return error_reply(ctx, d.error)
    provider = ctx.provider
    model = body["model"]
    stream = bool(body.get("stream"))
    ctx.call.stream = stream
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    choices_n = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
    prompt = 10 + count_words(chat_texts(body))
    tool = _first_chat_tool(body) if d.tool else None
    chunks, reasoning, cut = d.chunks, d.reasoning, False
    if tool is None:
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        chunks, reasoning, cut = apply_output_limit(chunks, reasoning, limit)
    if stream:
        chunks = fault_chunk_count(chunks, d)
    finish = "tool_calls" if tool else ("length" if cut else "stop")
    usage = chat_usage(
        provider, prompt, d.cached, 2 * chunks * choices_n, reasoning, writes=d.cache_write
    )
    cid = new_id("chatcmpl-", 28)
    created = int(time.time())
    headers = [("x-request-id", new_id("req_", 32))]
    if tool:
        name, args = tool
        call_id = new_id("call_", 24)
        pieces = split_string(json.dumps(args), chunks)
    else:
        pieces = answer_pieces(provider, chunks, d.chunks)

    if not stream:
        if tool:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": "".join(pieces)},
                    }
                ],
                "refusal": None,
                "annotations": [],
            }
        else:
            message = {
                "role": "assistant",
                "content": "".join(pieces),
                "refusal": None,
                "annotations": [],
            }
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                for i in range(choices_n)
            ],
        }
        if not d.nousage:
            obj["usage"] = usage
        if provider == "openai":
            obj["service_tier"] = "default"
        obj["system_fingerprint"] = "fp_fake"
        return json_reply(
            200, obj, usage=None if d.nousage else usage, chunks=len(pieces), headers=headers
        )

    base: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    if provider == "openai":
        base["service_tier"] = "default"
    base["system_fingerprint"] = "fp_fake"

    def chunk(choice: dict | None, usage_value: Any = None) -> bytes:
        obj = {**base, "choices": [choice] if choice is not None else []}
        if include_usage:
            obj["usage"] = usage_value
        return sse_data(obj)

    def frames() -> Iterator[Frame]:
        for i in range(choices_n):
            delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
            if tool:
                delta = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ],
                    "refusal": None,
                }
            yield Frame(
                chunk({"index": i, "delta": delta, "logprobs": None, "finish_reason": None})
            )
        for k, piece in enumerate(pieces):
            if d.midstream_error and k == MIDSTREAM_ERROR_AFTER:
                yield Frame(sse_data(_in_stream_error(provider)))
                return
            for i in range(choices_n):
                if tool:
                    delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                else:
                    delta = {"content": piece}
                yield Frame(
                    chunk({"index": i, "delta": delta, "logprobs": None, "finish_reason": None}),
                    content=True,
                )
        for i in range(choices_n):
            yield Frame(chunk({"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}))
        if include_usage and not d.nousage:
            yield Frame(chunk(None, usage), usage=usage)
        yield Frame(b"data: [DONE]\n\n")

    return Reply(status=200, headers=sse_headers() + headers, frames=frames(), stream=True)


# ---------------------------------------------------------------------------------------------
# Responses API


def responses(ctx: Ctx) -> Reply:
    body = ctx.body
    problem = _validate(body, ("model", "input"))
    if problem:
        return error_reply(ctx, 400, problem)
    d = ctx.d
    if d.error:
        return error_reply(ctx, d.error)
    provider = ctx.provider
    model = body["model"]
    stream = bool(body.get("stream"))
    ctx.call.stream = stream
    prompt = 10 + count_words(responses_texts(body))
    tool = _first_responses_tool(body) if d.tool else None
    chunks, reasoning, cut = d.chunks, d.reasoning, False
    if tool is None:
        chunks, reasoning, cut = apply_output_limit(
            chunks, reasoning, body.get("max_output_tokens")
        )
    if stream:
        chunks = fault_chunk_count(chunks, d)
    writes = d.cache_write if ctx.provider == "openai" else 0  # xAI reports no cache writes
    usage = responses_usage(
        prompt, d.cached, 2 * chunks, reasoning, writes=writes, ttl_12h=asks_12h_cache(body)
    )
    rid = new_id("resp_", 48)
    created = int(time.time())
    headers = [("x-request-id", new_id("req_", 32))]
    if tool:
        name, args = tool
        item_id = new_id("fc_", 48)
        call_id = new_id("call_", 24)
        pieces = split_string(json.dumps(args), chunks)
    else:
        item_id = new_id("msg_", 48)
        pieces = answer_pieces(provider, chunks, d.chunks)

    def response_obj(status: str, output: list, usage_value: dict | None) -> dict:
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_value,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    full = "".join(pieces)
    text_part_done = {"type": "output_text", "annotations": [], "logprobs": [], "text": full}
    if tool:
        item_done: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "arguments": full,
            "call_id": call_id,
            "name": name,
        }
    else:
        item_done = {
            "id": item_id,
            "type": "message",
            "status": "incomplete" if cut else "completed",
            "content": [text_part_done],
            "role": "assistant",
        }
    final_status = "incomplete" if cut else "completed"

    if not stream:
        obj = response_obj(final_status, [item_done], None if d.nousage else usage)
        return json_reply(
            200, obj, usage=None if d.nousage else usage, chunks=len(pieces), headers=headers
        )

    seq = 0

    def event(kind: str, payload: dict) -> bytes:
        nonlocal seq
        data = {"type": kind, "sequence_number": seq, **payload}
        seq += 1
        return sse_data(data, event=kind)

    def frames() -> Iterator[Frame]:
        yield Frame(event("response.created", {"response": response_obj("in_progress", [], None)}))
        yield Frame(
            event("response.in_progress", {"response": response_obj("in_progress", [], None)})
        )
        if tool:
            added = {**item_done, "status": "in_progress", "arguments": ""}
            yield Frame(event("response.output_item.added", {"output_index": 0, "item": added}))
        else:
            added = {**item_done, "status": "in_progress", "content": []}
            yield Frame(event("response.output_item.added", {"output_index": 0, "item": added}))
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            yield Frame(
                event(
                    "response.content_part.added",
                    {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part},
                )
            )
        for k, piece in enumerate(pieces):
            if d.midstream_error and k == MIDSTREAM_ERROR_AFTER:
                message = "The server had an error while processing your request. Sorry!"
                yield Frame(
                    event("error", {"code": "server_error", "message": message, "param": None})
                )
                failed = response_obj("failed", [], None)
                failed["error"] = {"code": "server_error", "message": message}
                yield Frame(event("response.failed", {"response": failed}))
                return
            if tool:
                payload = {"item_id": item_id, "output_index": 0, "delta": piece}
                kind = "response.function_call_arguments.delta"
            else:
                payload = {
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
                kind = "response.output_text.delta"
            yield Frame(event(kind, payload), content=True)
        if tool:
            yield Frame(
                event(
                    "response.function_call_arguments.done",
                    {"item_id": item_id, "output_index": 0, "name": name, "arguments": full},
                )
            )
        else:
            yield Frame(
                event(
                    "response.output_text.done",
                    {
                        "item_id": item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "text": full,
                        "logprobs": [],
                    },
                )
            )
            yield Frame(
                event(
                    "response.content_part.done",
                    {
                        "item_id": item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "part": text_part_done,
                    },
                )
            )
        yield Frame(event("response.output_item.done", {"output_index": 0, "item": item_done}))
        terminal = "response.incomplete" if cut else "response.completed"
        usage_value = None if d.nousage else usage
        yield Frame(
            event(terminal, {"response": response_obj(final_status, [item_done], usage_value)}),
            usage=usage_value,
        )

    return Reply(status=200, headers=sse_headers() + headers, frames=frames(), stream=True)


__all__ = ["auth_error_reply", "chat_completions", "error_reply", "responses"]
