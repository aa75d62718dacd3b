"""The API surface customers' applications call (DESIGN.md, "Proxy contract")."""

from __future__ import annotations

import json

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import PathConverter, Rule

from app.extensions import db
from app.models import ApiKey
from app.models.types import utcnow
from app.proxy import (
    anthropic,
    bp,
    gemini,
    openai,
    refusals,
    translate_anthropic,
    translate_gemini,
)
from app.proxy.errors import ANTHROPIC, GOOGLE, OPENAI, ProxyError, error_response
from app.proxy.gateway import (
    NESTED_TOO_DEEPLY,
    Estimate,
    Plan,
    admit_unmetered,
    authenticate,
    json_response,
    measure_body,
    measure_input,
    proxy_errors,
    resolve_model,
    serve_metered,
)
from app.proxy.upstream import UpstreamCall, error_from_response, send
from app.services.catalog import enabled_models, price_table
from app.services.keys import settled_by_period
from app.services.money import NANOS_PER_CREDIT, nanos_to_credits
from app.services.pricing import TOKENS_PER_PRICE_UNIT

NANOS_PER_TOKEN_PRICE_UNIT = NANOS_PER_CREDIT * TOKENS_PER_PRICE_UNIT
PER_TOKEN_DECIMALS = 15
OPENAI_COMPATIBLE = ("openai", "xai")


def per_token_price(nanos_per_mtok: int) -> str:
    """Credits per single token as an exact plain decimal string (at most 15 decimals)."""
    whole, frac = divmod(nanos_per_mtok, NANOS_PER_TOKEN_PRICE_UNIT)
    frac_text = f"{frac:0{PER_TOKEN_DECIMALS}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


def read_json_body() -> dict:
    """The request's JSON object; raises ProxyError 413 when too large (with or without a
    `Content-Length`: app/request_limits.py), 400 when not a JSON object."""
    limit = current_app.config["MAX_REQUEST_BYTES"]
    request.max_content_length = limit
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ProxyError(
            "request_too_large", f"The request body is larger than {limit} bytes."
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProxyError("invalid_request", "The request body is not valid JSON.") from None
    except RecursionError:
        raise ProxyError("invalid_request", NESTED_TOO_DEEPLY) from None
    if not isinstance(body, dict):
        raise ProxyError("invalid_request", "The request body must be a JSON object.")
    return body


# --- OpenAI-compatible -----------------------------------------------------------------------


def openai_call(body: dict, model, path: str, upstream_body, stream: bool):
    """How an OpenAI-compatible route calls OpenAI or xAI once the hold has set the output limit:
    the body as sent, with the gateway's limit and opaque user, and the `openai-beta` header."""
    headers = {k: v for k, v in request.headers.items() if k.lower() == "openai-beta"}
    return lambda exchange: UpstreamCall(
        provider=model.provider,
        path=path,
        body=upstream_body(
            body,
            model,
            output_limit=gateway_limit(exchange),
            opaque_user=exchange.caller.opaque_user,
        ),
        stream=stream,
        headers=headers,
    )


def gateway_limit(exchange) -> int | None:
    """The output limit the gateway sets upstream: only when the client set none."""
    return exchange.output_limit if exchange.gateway_set_limit else None


@bp.post("/v1/chat/completions")
@proxy_errors(OPENAI)
def chat_completions():
    body = read_json_body()
    return serve_metered(
        dialect=OPENAI,
        route="chat.completions",
        model_name=body.get("model"),
        plan_for=lambda model: chat_plan(body, model),
    )


def chat_plan(body: dict, model) -> Plan:
    openai.validate_chat(body)
    if model.provider == "anthropic":
        translator = translate_anthropic.ChatToMessages(body, model)
    elif model.provider == "google":
        translator = translate_gemini.ChatToGemini(body, model)
    else:
        translator = None
    if translator is not None:
        translator.validate()  # the translation sends no service tier, so none is refused
    else:
        openai.refuse_service_tier(body)
    stream = bool(body.get("stream"))
    estimate = Estimate(
        input=measure_input(body, len(body["messages"])),
        requested_output=openai.chat_output_limit(body),
        choices=openai.chat_choices(body),
    )
    if translator is not None:
        return Plan(
            estimate,
            stream,
            upstream_call=lambda exchange: translator.upstream_call(
                output_limit=exchange.output_limit, opaque_user=exchange.caller.opaque_user
            ),
            relay=translator.relay,
        )
    return Plan(
        estimate,
        stream,
        upstream_call=openai_call(body, model, openai.CHAT_PATH, openai.chat_upstream_body, stream),
        relay=lambda: openai.ChatRelay(
            model,
            client_wants_usage=openai.wants_usage(body),
            long_cache_writes=openai.long_cache_writes(body),
        ),
    )


@bp.post("/v1/responses")
@proxy_errors(OPENAI)
def responses():
    body = read_json_body()
    return serve_metered(
        dialect=OPENAI,
        route="responses",
        model_name=body.get("model"),
        plan_for=lambda model: responses_plan(body, model),
    )


def responses_plan(body: dict, model) -> Plan:
    if model.provider not in OPENAI_COMPATIBLE:
        raise ProxyError(
            "invalid_request",
            f"The Responses API serves OpenAI and xAI models; use /v1/chat/completions for "
            f"'{model.model_id}'.",
            param="model",
        )
    openai.validate_responses(body)
    stream = bool(body.get("stream"))
    input_items = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return Plan(
        Estimate(
            input=measure_input(body, len(input_items)),
            requested_output=openai.responses_output_limit(body),
        ),
        stream,
        upstream_call=openai_call(
            body, model, openai.RESPONSES_PATH, openai.responses_upstream_body, stream
        ),
        relay=lambda: openai.ResponsesRelay(
            model, long_cache_writes=openai.long_cache_writes(body)
        ),
    )


@bp.get("/v1/models")
def list_models():
    """Enabled models with prices and limits, in OpenRouter's shape; public, no key needed."""
    data = []
    for model in enabled_models():
        tiers = price_table(model)
        base = tiers[0]
        pricing = {
            "prompt": per_token_price(base["input"]),
            "completion": per_token_price(base["output"]),
        }
        for token_class, field in (
            ("cache_read", "input_cache_read"),
            ("cache_write_5m", "input_cache_write"),
            ("cache_write_1h", "input_cache_write_1h"),
        ):
            if token_class in base:
                pricing[field] = per_token_price(base[token_class])
        entry = {
            "id": model.model_id,
            "name": model.name,
            "provider": model.provider,
            "object": "model",
            "owned_by": model.provider,
            "context_length": model.context_length,
            "pricing": pricing,
            "top_provider": {
                "context_length": model.context_length,
                "max_completion_tokens": model.max_output_tokens,
            },
            # OpenAI's own model list names a retirement `shutdown_date` (YYYY-MM-DD or null);
            # the replacement is OneKey's addition. Clients ignore fields they do not know.
            "status": model.status,
            "shutdown_date": model.retires_on.isoformat() if model.retires_on else None,
            "replacement": model.replacement_model_id,
        }
        long_tiers = [
            {
                "above_prompt_tokens": threshold,
                "prompt": per_token_price(classes["input"]),
                "completion": per_token_price(classes["output"]),
            }
            for threshold, classes in sorted(tiers.items())
            if threshold
        ]
        if long_tiers:
            entry["pricing_tiers"] = long_tiers
        data.append(entry)
    return jsonify(object="list", data=data)


@bp.get("/v1/key")
@proxy_errors(OPENAI)
def key_info():
    """The calling key, in OpenRouter's shape (/api/v1/key) plus OneKey's balance and held.

    `limit_remaining` is what the key may still reserve: its limit less this period's spend (its
    lifetime spend when the limit does not reset) and its open holds. `usage_daily`, `_weekly` and
    `_monthly` are what was settled since midnight UTC, Monday and the 1st. A paused key is
    answered (`disabled`: true) so that its owner's tools can tell why requests are refused.
    """
    caller = authenticate(allow_paused=True)
    key = db.session.get(ApiKey, caller.key_id)
    account = key.account
    now = utcnow()
    limit = key.limit_nanocredits
    remaining = key.limit_remaining_at(now)
    return jsonify(
        data={
            "name": key.name,
            "label": key.masked,
            "balance": nanos_to_credits(account.balance_nanocredits),
            "held": nanos_to_credits(account.held_nanocredits),
            "usage": nanos_to_credits(key.usage_nanocredits),
            **{
                f"usage_{period}": nanos_to_credits(spent)
                for period, spent in settled_by_period(key.id, now).items()
            },
            "limit": None if limit is None else nanos_to_credits(limit),
            "limit_remaining": None if remaining is None else nanos_to_credits(remaining),
            "limit_reset": key.limit_reset,
            "expires_at": key.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.expires_at else None,
            "disabled": key.paused_at is not None,
        }
    )


# --- Anthropic-native ------------------------------------------------------------------------


def require_provider(model, provider: str) -> None:
    """Native routes serve their own provider's models only; raises ProxyError 400."""
    if model.provider != provider:
        raise ProxyError(
            "invalid_request",
            f"'{model.model_id}' is not a {provider} model; this route serves only {provider} models.",
        )


@bp.post("/anthropic/v1/messages")
@proxy_errors(ANTHROPIC)
def anthropic_messages():
    body = read_json_body()
    return serve_metered(
        dialect=ANTHROPIC,
        route="anthropic.messages",
        model_name=body.get("model"),
        plan_for=lambda model: messages_plan(body, model),
    )


def messages_plan(body: dict, model) -> Plan:
    require_provider(model, "anthropic")
    anthropic.validate_messages(body)
    stream = bool(body.get("stream"))
    headers = anthropic.forwarded_headers(request.headers)
    return Plan(
        Estimate(
            input=measure_input(body, len(body["messages"])),
            requested_output=anthropic.output_limit(body),
        ),
        stream,
        upstream_call=lambda exchange: UpstreamCall(
            provider="anthropic",
            path=anthropic.MESSAGES_PATH,
            body=anthropic.upstream_body(
                body,
                model,
                limit=gateway_limit(exchange),
                opaque_user=exchange.caller.opaque_user,
            ),
            stream=stream,
            headers=headers,
        ),
        relay=lambda: anthropic.MessagesRelay(model),
    )


@bp.post("/anthropic/v1/messages/count_tokens")
@proxy_errors(ANTHROPIC)
def anthropic_count_tokens():
    """Free at Anthropic, so not metered; still needs a valid key, an Anthropic model the key may
    use, and a slot in the key's requests per minute."""
    body = read_json_body()
    refusals.note_model(body.get("model"))
    caller = authenticate()
    model = resolve_model(body.get("model"))
    require_provider(model, "anthropic")
    measure_body(body)  # refuses what cannot be sent on
    admit_unmetered(caller, model)
    refusals.upstream_reached()
    upstream = send(
        UpstreamCall(
            provider="anthropic",
            path=anthropic.COUNT_TOKENS_PATH,
            body={**body, "model": model.model_id},
            stream=False,
            headers=anthropic.forwarded_headers(request.headers),
        )
    )
    if upstream.status_code >= 400:
        raise error_from_response("anthropic", upstream)
    try:
        return json_response(upstream.json(), {})
    except ValueError:
        raise ProxyError("upstream_error", "The provider sent a malformed answer.") from None


@bp.get("/anthropic/v1/models")
@proxy_errors(ANTHROPIC)
def anthropic_models():
    authenticate()
    models = enabled_models("anthropic")
    data = [
        {
            "type": "model",
            "id": m.model_id,
            "display_name": m.name,
            "created_at": m.synced_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for m in models
    ]
    return jsonify(
        data=data,
        has_more=False,
        first_id=data[0]["id"] if data else None,
        last_id=data[-1]["id"] if data else None,
    )


# --- Gemini-native ---------------------------------------------------------------------------


@bp.post("/gemini/<version>/models/<path:model_action>")
@proxy_errors(GOOGLE)
def gemini_generate(version: str, model_action: str):
    if version not in gemini.VERSIONS:
        raise ProxyError("model_not_found", f"Unknown API version '{version}'.")
    model_name, _, action = model_action.rpartition(":")
    if action not in ("generateContent", "streamGenerateContent"):
        raise ProxyError("model_not_found", f"Unknown method '{action or model_action}'.")
    body = read_json_body()
    return serve_metered(
        dialect=GOOGLE,
        route="gemini.generate",
        model_name=model_name,
        plan_for=lambda model: generate_plan(body, model, version, action),
    )


def generate_plan(body: dict, model, version: str, action: str) -> Plan:
    require_provider(model, "google")
    gemini.validate(body)
    stream = action == "streamGenerateContent"
    as_sse = request.args.get("alt") == "sse"
    return Plan(
        Estimate(
            input=measure_input(body, len(body["contents"])),
            requested_output=gemini.output_limit(body),
            choices=gemini.candidate_count(body),
        ),
        stream,
        upstream_call=lambda exchange: UpstreamCall(
            provider="google",
            path=f"/{version}/models/{model.model_id}:{action}",
            body=gemini.upstream_body(body, limit=gateway_limit(exchange)),
            stream=stream,
            query={"alt": "sse"} if stream else {},
        ),
        relay=lambda: gemini.GenerateRelay(model, as_sse=as_sse),
        stream_mimetype="text/event-stream" if as_sse else "application/json",
    )


# --- paths and methods the gateway does not serve --------------------------------------------

# The dialect of everything under each prefix: an SDK cannot read an HTML error page.
PREFIX_DIALECTS = {"v1": OPENAI, "anthropic": ANTHROPIC, "gemini": GOOGLE}
UNKNOWN_ROUTE = "proxy.unknown_route"


class AnyRestConverter(PathConverter):
    """The rest of a path, newlines (`%0A`) included, which `path`'s pattern does not match."""

    regex = "[^/](?s:.)*?"


@bp.record_once
def answer_unknown_routes(state) -> None:
    """Route every other path under the prefixes, with any method, to `unknown_route`.

    A werkzeug rule without methods matches every method, which Flask's `route()` cannot say.
    The gateway's own routes match first: werkzeug tries static segments and narrower converters
    before a `path` one, and moves on to this rule when a path matched but its method did not.
    """
    state.app.url_map.converters["any_rest"] = AnyRestConverter
    for prefix in PREFIX_DIALECTS:
        for path in (f"/{prefix}", f"/{prefix}/", f"/{prefix}/<any_rest:rest>"):
            state.app.url_map.add(Rule(path, endpoint=UNKNOWN_ROUTE, strict_slashes=False))
    state.app.view_functions[UNKNOWN_ROUTE] = unknown_route


def unknown_route(rest: str = ""):
    """404, or 405 with `Allow` when the path is served with another method; in the dialect."""
    dialect = PREFIX_DIALECTS[request.path.split("/", 2)[1]]
    allowed = served_methods(request.path)
    if allowed:
        error = ProxyError(
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
    else:
        error = ProxyError(
            "route_not_found", f"Unknown request URL: {request.method} {request.path}."
        )
    return error_response(error, dialect, g.request_id)


def served_methods(path: str) -> list[str]:
    """The methods the gateway's own routes serve `path` with (they use GET and POST)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    served = []
    for method in ("GET", "POST"):
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint != UNKNOWN_ROUTE:
            served.append(method)
    return served
