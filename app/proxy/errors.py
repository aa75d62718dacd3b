"""Errors in each route's dialect (DESIGN.md, "Proxy contract", the error table)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask import Response

OPENAI, ANTHROPIC, GOOGLE = "openai", "anthropic", "google"

# condition -> (status, OpenAI code, Anthropic type, Google status)
CONDITIONS: dict[str, tuple[int, str, str, str]] = {
    "invalid_request": (400, "invalid_request", "invalid_request_error", "INVALID_ARGUMENT"),
    "invalid_api_key": (401, "invalid_api_key", "authentication_error", "UNAUTHENTICATED"),
    "insufficient_credits": (402, "insufficient_credits", "billing_error", "FAILED_PRECONDITION"),
    "key_limit_reached": (402, "key_limit_reached", "billing_error", "FAILED_PRECONDITION"),
    "account_suspended": (403, "account_suspended", "permission_error", "PERMISSION_DENIED"),
    "model_not_allowed": (403, "model_not_allowed", "permission_error", "PERMISSION_DENIED"),
    # The key's owner paused it in the portal; resuming it there makes it work again.
    "key_paused": (403, "key_paused", "permission_error", "PERMISSION_DENIED"),
    "model_not_found": (404, "model_not_found", "not_found_error", "NOT_FOUND"),
    # A path or method under /v1, /anthropic or /gemini that the gateway does not serve.
    "route_not_found": (404, "not_found", "not_found_error", "NOT_FOUND"),
    "method_not_allowed": (405, "method_not_allowed", "invalid_request_error", "UNIMPLEMENTED"),
    "request_too_large": (413, "request_too_large", "request_too_large", "INVALID_ARGUMENT"),
    "rate_limited": (429, "rate_limited", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    "upstream_error": (502, "upstream_error", "api_error", "UNAVAILABLE"),
    # Not `overloaded_error`: that says "retry soon", and a provider the operator has not
    # configured stays so. The 503 carries `x-should-retry: false`, which the SDKs obey.
    "provider_unavailable": (503, "provider_unavailable", "api_error", "UNAVAILABLE"),
    "upstream_timeout": (504, "upstream_timeout", "timeout_error", "DEADLINE_EXCEEDED"),
    # OneKey's own database or Redis did not answer in time: nothing was reserved; retry.
    "gateway_unavailable": (503, "gateway_unavailable", "overloaded_error", "UNAVAILABLE"),
}

# For upstream 4xx answers passed on with their own status.
STATUS_TYPES: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    404: ("not_found_error", "not_found_error", "NOT_FOUND"),
    408: ("timeout_error", "timeout_error", "DEADLINE_EXCEEDED"),
    409: ("conflict_error", "invalid_request_error", "ABORTED"),
    413: ("request_too_large", "request_too_large", "INVALID_ARGUMENT"),
    422: ("invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    429: ("rate_limit_error", "rate_limit_error", "RESOURCE_EXHAUSTED"),
}
NO_RETRY_STATUSES = {401, 402, 403, 503}
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


# What the catalogue cannot price (DESIGN.md, "Money"): features the provider bills apart from
# the token counts OneKey meters. Every route refuses a request using one, before any hold, with
# `unpriceable`; the provider modules only map their own spellings onto these.
UNPRICEABLE: dict[str, str] = {
    "web_search": "web search is billed by the provider per use and OneKey cannot price it",
    "maps": "Google Maps grounding is billed by the provider per use and OneKey cannot price it",
    "file_search": (
        "file search is billed by the provider per call and for storage, and OneKey cannot price it"
    ),
    "code_execution": (
        "code execution runs on the provider's side, which bills it apart from the tokens, and "
        "OneKey cannot price it"
    ),
    "image_generation": (
        "image generation is billed by the provider per image and OneKey cannot price it"
    ),
    "cache_ttl": (
        "OneKey prices prompt-cache writes of 30 minutes and 12 hours ('30m', '12h'), not other "
        "lifetimes"
    ),
    "provider_tool": (
        "OneKey can price only tools your application defines and runs (function tools); the "
        "provider's own tools may be billed apart from the tokens, which OneKey cannot price"
    ),
    "service_tier": (
        "service tiers other than the default are billed at rates the catalogue does not hold, "
        "so OneKey cannot price them"
    ),
}


@dataclass
class ProxyError(Exception):
    """A refusal or failure, rendered in whatever dialect the route speaks."""

    condition: str
    message: str
    param: str | None = None
    metadata: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    # Set for upstream 4xx answers passed on with their own status.
    status_override: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.status_override or CONDITIONS[self.condition][0]


def unpriceable(feature: str, subject: str, param: str | None = None) -> ProxyError:
    """The 400 for a request using something the catalogue cannot price (see UNPRICEABLE).

    `subject` names what the request set, as the route's dialect spells parameters.
    """
    return ProxyError(
        "invalid_request", f"{subject} is not supported: {UNPRICEABLE[feature]}.", param=param
    )


def upstream_client_error(status: int, message: str, headers: dict | None = None) -> ProxyError:
    """An upstream 4xx (not 401/402/403), passed on with its status."""
    return ProxyError(
        "invalid_request",
        message,
        status_override=status,
        headers=headers or {},
    )


def error_body(error: ProxyError, dialect: str) -> dict:
    status = error.status
    if error.status_override and error.status_override in STATUS_TYPES:
        openai_type, anthropic_type, google_status = STATUS_TYPES[error.status_override]
        openai_code = openai_type
    else:
        _, openai_code, anthropic_type, google_status = CONDITIONS[error.condition]
        openai_type = OPENAI_ERROR_TYPES.get(status, "api_error")
    if dialect == ANTHROPIC:
        body = {"type": "error", "error": {"type": anthropic_type, "message": error.message}}
        body["error"].update(error.metadata)
        return body
    if dialect == GOOGLE:
        body = {"error": {"code": status, "message": error.message, "status": google_status}}
        if error.metadata:
            body["error"]["details"] = [{"@type": "onekey.billing", **error.metadata}]
        return body
    inner = {"message": error.message, "type": openai_type, "code": openai_code}
    inner["param"] = error.param
    if error.metadata:
        inner["metadata"] = error.metadata
    return {"error": inner}


def error_response(error: ProxyError, dialect: str, request_id: str) -> Response:
    response = Response(
        json.dumps(error_body(error, dialect)), status=error.status, mimetype="application/json"
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    if error.status in NO_RETRY_STATUSES:
        response.headers.setdefault("x-should-retry", "false")
    response.headers["x-request-id"] = request_id
    return response


def stream_error_event(error: ProxyError, dialect: str) -> bytes:
    """The in-stream form of an error, for failures after a stream has started."""
    body = json.dumps(error_body(error, dialect))
    if dialect == ANTHROPIC:
        return f"event: error\ndata: {body}\n\n".encode()
    return f"data: {body}\n\n".encode()
