"""Fake Gemini (Generative Language API): generateContent, streamGenerateContent, countTokens."""

from __future__ import annotations

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
    dumps,
    example_args,
    fault_chunk_count,
    json_reply,
    new_id,
    sse_headers,
)

JSON_TYPE = "application/json; charset=UTF-8"
EXTRA_CHUNKS_AFTER_DISCONNECT = 10
EXTRA_CHUNK_DELAY_MS = 100

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    404: "models/unknown is not found for API version v1beta, or is not supported for "
    "generateContent.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


def error_body(status: int, message: str | None = None) -> dict:
    code = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    error: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, code.replace("_", " ").capitalize()),
        "status": code,
    }
    if status == 429:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        ]
    return {"error": error}


def error_reply(status: int, message: str | None = None) -> Reply:
    headers = [("retry-after", "7")] if status == 429 else []
    return json_reply(status, error_body(status, message), headers=headers, content_type=JSON_TYPE)


def auth_error_reply(realistic: bool) -> Reply:
    if realistic:
        # what Google really answers for a wrong key: 400, reason API_KEY_INVALID
        body = {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            }
        }
        return json_reply(400, body, content_type=JSON_TYPE)
    return error_reply(401)


def _parts_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, dict):
        content = content.get("parts")
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def request_texts(body: dict) -> list[str]:
    texts = _parts_texts(body.get("systemInstruction", body.get("system_instruction")))
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    for content in contents or []:
        texts += _parts_texts(content)
    return texts


def _first_tool(body: dict) -> tuple[str, dict] | None:
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        decls = tool.get("functionDeclarations", tool.get("function_declarations")) or []
        for decl in decls:
            if isinstance(decl, dict):
                schema = (
                    decl.get("parameters")
                    or decl.get("parametersJsonSchema")
                    or decl.get("parameters_json_schema")
                )
                return str(decl.get("name") or "tool"), example_args(schema)
    return None


def usage_metadata(
    prompt: int, cached: int, candidates: int, thoughts: int, tooluse: int
) -> dict[str, Any]:
    """usageMetadata as Google writes it: zero counts omitted; prompt includes cached."""
    prompt_count = prompt + cached
    usage: dict[str, Any] = {"promptTokenCount": prompt_count}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt_count + candidates + thoughts + tooluse
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_count}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if tooluse:
        usage["toolUsePromptTokenCount"] = tooluse
        usage["toolUsePromptTokensDetails"] = [{"modality": "TEXT", "tokenCount": tooluse}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def count_tokens(ctx: Ctx) -> Reply:
    body = ctx.body
    if not isinstance(body, dict):
        return error_reply(400, "Invalid JSON payload received.")
    if ctx.d.error:
        return error_reply(ctx.d.error)
    inner = body.get("generateContentRequest", body.get("generate_content_request"))
    total = 10 + count_words(request_texts(inner if isinstance(inner, dict) else body))
    return json_reply(
        200,
        {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]},
        content_type=JSON_TYPE,
    )


def generate(ctx: Ctx, model: str, *, stream: bool) -> Reply:
    body = ctx.body
    if not isinstance(body, dict):
        return error_reply(400, "Invalid JSON payload received.")
    if not body.get("contents"):
        return error_reply(400, "* GenerateContentRequest.contents: contents is not specified")
    d = ctx.d
    if d.error:
        return error_reply(d.error)
    ctx.call.stream = stream
    sse = ctx.query.get("alt") == "sse"
    prompt = 10 + count_words(request_texts(body))
    tool = _first_tool(body) if d.tool else None
    config = body.get("generationConfig", body.get("generation_config")) or {}
    limit = config.get("maxOutputTokens", config.get("max_output_tokens"))
    chunks, thoughts, cut = d.chunks, d.reasoning, False
    if tool is None:
        chunks, thoughts, cut = apply_output_limit(chunks, thoughts, limit)
    rid = new_id("", 22)
    finish = "MAX_TOKENS" if cut else "STOP"

    def usage_for(candidates: int) -> dict:
        return usage_metadata(prompt, d.cached, candidates, thoughts, d.tooluse)

    def response(parts: list[dict], finish_reason: str | None, usage: dict | None) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish_reason:
            candidate["finishReason"] = finish_reason
        candidate["index"] = 0
        obj: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            obj["usageMetadata"] = usage
        obj["modelVersion"] = model
        obj["responseId"] = rid
        return obj

    if tool:
        name, args = tool
        tool_parts = [{"functionCall": {"name": name, "args": args}}]

    if not stream:
        if tool:
            parts = tool_parts
        else:
            parts = [{"text": "".join(answer_pieces("gemini", chunks, d.chunks))}] if chunks else []
        usage = None if d.nousage else usage_for(2 * chunks)
        obj = response(parts, finish, usage)
        return json_reply(200, obj, usage=usage, chunks=len(parts), content_type=JSON_TYPE)

    # A stream: one object per content chunk, counts cumulative; chunks at odd positions
    # (other than the last) carry no usageMetadata; the last has finishReason and the totals.
    if tool:
        steps: list[tuple[list[dict], int, int | None]] = [(tool_parts, 2 * chunks, None)]
    else:
        chunks = fault_chunk_count(chunks, d)
        pieces = answer_pieces("gemini", chunks, d.chunks) or [""]
        steps = [([{"text": piece}], 2 * (k + 1), None) for k, piece in enumerate(pieces)]
        if d.long_after_disconnect:
            delay = d.slow_ms or EXTRA_CHUNK_DELAY_MS
            base = 2 * len(pieces)
            steps += [
                ([{"text": f" more{k}"}], base + 2 * (k + 1), delay)
                for k in range(EXTRA_CHUNKS_AFTER_DISCONNECT)
            ]

    def encode(obj: dict, first: bool) -> bytes:
        if sse:
            return f"data: {dumps(obj)}\r\n\r\n".encode()
        return (("[" if first else ",\r\n") + dumps(obj)).encode()

    def frames() -> Iterator[Frame]:
        last = len(steps) - 1
        for k, (parts, candidates, delay) in enumerate(steps):
            if d.midstream_error and k == MIDSTREAM_ERROR_AFTER:
                yield Frame(encode(error_body(500), first=k == 0))
                if not sse:
                    yield Frame(b"]")
                return
            counted = (k % 2 == 0 or k == last) and not d.nousage
            usage = usage_for(candidates) if counted else None
            obj = response(parts, finish if k == last else None, usage)
            yield Frame(encode(obj, first=k == 0), content=True, usage=usage, delay_ms=delay)
        if not sse:
            yield Frame(b"]")

    headers = sse_headers("text/event-stream") if sse else [("Content-Type", JSON_TYPE)]
    return Reply(status=200, headers=headers, frames=frames(), stream=True)
