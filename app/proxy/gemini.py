"""Google Gemini generateContent, passed through as sent (the native `/gemini` route).

Added on the way up: `generationConfig.maxOutputTokens` when the client set none. Stream chunks
carry cumulative counts (some none); the gateway meters from the last chunk that has them.
Refused before any hold: any tool but function declarations (Google Search grounding and the other
tools Google runs are billed apart from the tokens; errors.UNPRICEABLE).
"""

from __future__ import annotations

import json
import re

from app.proxy.errors import GOOGLE, ProxyError, error_body, unpriceable
from app.proxy.metering import PricedModel, Usage, delivered_json_bytes, usage_from_gemini
from app.proxy.relay import (
    BaseRelay,
    StringValues,
    is_object,
    object_value,
    parse_object_at,
)
from app.proxy.sse import json_object, raw_frame

VERSIONS = ("v1", "v1beta")
# The one kind of tool the client runs (billed as tokens); every other key of a Tool object is a
# tool Google runs -> errors.UNPRICEABLE feature (others are "provider_tool").
FUNCTION_TOOL_KEYS = ("functionDeclarations", "function_declarations")
GOOGLE_TOOL_FEATURES = {
    "googleSearch": "web_search",
    "google_search": "web_search",
    "googleSearchRetrieval": "web_search",
    "google_search_retrieval": "web_search",
    "enterpriseWebSearch": "web_search",
    "enterprise_web_search": "web_search",
    "googleMaps": "maps",
    "google_maps": "maps",
    "fileSearch": "file_search",
    "file_search": "file_search",
    "codeExecution": "code_execution",
    "code_execution": "code_execution",
}


def validate(body: dict) -> None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ProxyError("invalid_request", "contents must be a non-empty array.")
    config = body.get("generationConfig", {})
    if not isinstance(config, dict):
        raise ProxyError("invalid_request", "generationConfig must be an object.")
    output_limit(body)
    candidate_count(body)
    refuse_google_tools(body)


def refuse_google_tools(body: dict) -> None:
    """A 400 for the first tool other than function declarations (DESIGN.md, "Money")."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        for name in tool:
            if name not in FUNCTION_TOOL_KEYS:
                feature = GOOGLE_TOOL_FEATURES.get(name, "provider_tool")
                raise unpriceable(feature, f"tools[{i}].{name}")


def _config_int(body: dict, name: str, maximum: int | None = None) -> int | None:
    value = (body.get("generationConfig") or {}).get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProxyError("invalid_request", f"generationConfig.{name} must be a positive integer.")
    if maximum is not None and value > maximum:
        raise ProxyError("invalid_request", f"generationConfig.{name} must be at most {maximum}.")
    return value


def output_limit(body: dict) -> int | None:
    return _config_int(body, "maxOutputTokens")


def candidate_count(body: dict) -> int:
    return _config_int(body, "candidateCount", maximum=8) or 1


def upstream_body(body: dict, *, limit: int | None) -> dict:
    upstream = dict(body)
    if limit is not None:
        upstream["generationConfig"] = {
            **(body.get("generationConfig") or {}),
            "maxOutputTokens": limit,
        }
    return upstream


# Chunks parsed whole: errors, the last (finishReason) and function calls (their arguments are
# metered as compact JSON). Other chunks are passed as they came; their counts are read alone.
GENERATE_PARSED = re.compile(rb'"(?:error|finishReason|functionCall)"')
USAGE_METADATA = object_value("usageMetadata")
PART_TEXT = StringValues("text")


class GenerateRelay(BaseRelay):
    """Relays SSE chunks as SSE, or (when the client asked without alt=sse) as a JSON array."""

    dialect = GOOGLE

    def __init__(self, model: PricedModel, *, as_sse: bool = True):
        super().__init__(model)  # sets `usage`, and with it `_counts`
        self.as_sse = as_sse
        self._sent_any = False

    # Google repeats the counts on every chunk and only the last are billed: a chunk passed as it
    # came is kept whole, and its counts are parsed when read.
    @property
    def usage(self) -> Usage | None:
        if self._counts is not None:
            report = parse_object_at(USAGE_METADATA, self._counts)
            self._counts = None
            if report:
                self._usage = usage_from_gemini(report)
        return self._usage

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._usage, self._counts = value, None

    def _take(self, chunk: dict) -> None:
        report = chunk.get("usageMetadata")
        if isinstance(report, dict) and report:
            self.usage = usage_from_gemini(report)
        candidates = chunk.get("candidates") or []
        for candidate in candidates:
            if not isinstance(candidate, dict):
                continue
            for part in (candidate.get("content") or {}).get("parts") or []:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    self.delivered_bytes += len(part["text"].encode())
                elif isinstance(part.get("functionCall"), dict):
                    self.delivered_bytes += delivered_json_bytes(
                        part["functionCall"].get("args", {})
                    )
            if candidate.get("finishReason"):
                self.finished = True
        if self.finished and self.usage is not None:
            self.usage_complete = True

    def _take_raw(self, data: bytes) -> None:
        """`_take` for a chunk of only text and counts, without parsing all of it."""
        if USAGE_METADATA.search(data):
            self._counts = data
            if self.finished and self.usage is not None:
                self.usage_complete = True
        self.delivered_bytes += PART_TEXT.utf8_length(data)

    def response_body(self, upstream: dict) -> dict:
        self._take(upstream)
        self.finished = True
        self.usage_complete = self.usage is not None
        return upstream

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        if not is_object(data):
            return b""
        if GENERATE_PARSED.search(data) is None:
            self._take_raw(data)
        else:
            chunk = json_object(data)
            if chunk is None:
                return b""
            if "error" in chunk:
                self.finished = False
                self.failed = True
            else:
                self._take(chunk)
        if self.as_sse:
            return raw_frame(data, eol=b"\r\n")
        prefix = b"," if self._sent_any else b"["
        self._sent_any = True
        return prefix + data

    def closing(self) -> bytes:
        if self.as_sse:
            return b""
        return b"]" if self._sent_any else b"[]"

    def error_frame(self, error: ProxyError) -> bytes:
        """An error after the stream started: the last element of the JSON array, which it closes
        (an SSE `data:` line would break the array)."""
        if self.as_sse:
            return super().error_frame(error)
        body = json.dumps(error_body(error, GOOGLE), separators=(",", ":")).encode()
        prefix = b"," if self._sent_any else b"["
        self._sent_any = True
        return prefix + body + b"]"
