"""The metered pipeline every proxy route shares (DESIGN.md, "The hot path").

authenticate (a per-process cache of valid keys) -> resolve the model (a per-process cache checked
by the hold) -> validate and estimate (the route's plan) -> rate limits (one Redis round trip) ->
the hold (one database statement that re-checks the key, the account, the model's version, the
allow-list and every credit limit) -> call upstream -> relay -> settle exactly once (one statement),
on every path. No database connection is held while the provider answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import urllib3
from flask import Response, current_app, g, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import JSON, Date, bindparam, text
from sqlalchemy import exc as sqlalchemy_exc

from app import metrics
from app.extensions import db, get_redis
from app.models.types import UTCDateTime, utcnow
from app.proxy import catalog_cache, limits, refusals
from app.proxy.errors import GOOGLE, ProxyError, error_response
from app.proxy.exchange import Caller, Exchange, settle
from app.proxy.metering import InputSize, PricedModel
from app.proxy.relay import Relay
from app.proxy.streaming import stream_response
from app.proxy.upstream import UpstreamCall, UpstreamResponse, error_from_response, send
from app.services import holds
from app.services.keys import KEY_PREFIX, hash_key
from app.services.money import nanos_to_credits
from app.services.pricing import cost_bound

log = logging.getLogger("onekey.proxy")

MODEL_PREFIXES = {
    "openai/": "openai",
    "anthropic/": "anthropic",
    "google/": "google",
    "x-ai/": "xai",
}
# Valid keys seen by this process, by their hash. Only identity lives here (ids, the per-minute
# limit); whether the key and its account may spend is decided by the hold statement every time.
KEY_CACHE_MAX = 100_000
KEY_PAUSED = "This API key is paused. Resume it on the API keys page to use it again."


@dataclass
class Estimate:
    """What the hold is computed from (DESIGN.md, "Holds")."""

    input: InputSize
    requested_output: int | None  # the client's own limit, if it set one
    choices: int = 1

    @property
    def input_tokens(self) -> int:
        return self.input.bound


@dataclass
class Plan:
    """What a route made of one request for one model: the hold's estimate, then (once the hold
    is placed) the upstream call and the relay."""

    estimate: Estimate
    stream: bool
    upstream_call: Callable[[Exchange], UpstreamCall]
    relay: Callable[[], Relay]
    stream_mimetype: str = "text/event-stream"


# --- authentication -------------------------------------------------------------------------


def presented_key() -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    for header in ("x-api-key", "x-goog-api-key"):
        if request.headers.get(header):
            return request.headers[header].strip()
    return request.args.get("key")


def client_address() -> str:
    return request.remote_addr or "unknown"


def opaque_user_id(account_id: int) -> str:
    """A stable id per account that tells the provider nothing about who the customer is."""
    secret = current_app.config["KEY_HASH_SECRET"].encode()
    digest = hmac.new(secret, f"account:{account_id}".encode(), hashlib.sha256).hexdigest()
    return f"onekey-{digest[:32]}"


KEY_SQL = (
    text(
        """
SELECT k.id, k.account_id, k.allowed_models, k.rate_limit_rpm, k.revoked_at,
       k.expires_at <= :now AS expired, k.paused_at, a.status
FROM api_keys k JOIN accounts a ON a.id = k.account_id
WHERE k.key_hash = :key_hash
"""
    )
    .bindparams(bindparam("now", type_=UTCDateTime()))
    .columns(allowed_models=JSON())
)

_known_keys: dict[str, tuple[Caller, float]] = {}  # key hash -> (caller, read at, monotonic)
_known_keys_lock = threading.Lock()


def authenticate(*, fresh: bool = True, allow_paused: bool = False) -> Caller:
    """The calling key and its account.

    `fresh=False` (metered routes) may answer from this process's cache of valid keys, because the
    hold statement refuses a revoked, expired or paused key and an inactive account itself; other
    routes read the database. `allow_paused` lets a paused key through (/v1/key reports on it).
    Raises ProxyError 401 (missing, unknown, revoked, expired), 403 (account not active, key
    paused) or 429 (an address that keeps presenting invalid keys).
    """
    plaintext = presented_key()
    if not plaintext:
        raise ProxyError(
            "invalid_api_key",
            "Missing API key: send it as 'Authorization: Bearer ok-...'.",
        )
    well_formed = plaintext.startswith(KEY_PREFIX) and len(plaintext) == len(KEY_PREFIX) + 43
    digest = hash_key(plaintext) if well_formed else None
    config = current_app.config
    if digest is not None and not fresh:
        cached = _known_keys.get(digest)
        if cached is not None and time.monotonic() - cached[1] < config["KEY_CACHE_SECONDS"]:
            refusals.note_key(cached[0].key_id)
            return cached[0]
    row = None
    if digest is not None:
        with db.engine.connect() as conn:
            row = conn.execute(KEY_SQL, {"key_hash": digest, "now": utcnow()}).first()
        if row is not None:
            refusals.note_key(row.id)
    if row is None or row.revoked_at is not None or row.expired:
        refuse_invalid_key(
            "Invalid API key." if row is None else "This API key is revoked or expired."
        )
    if row.status != "active":
        raise ProxyError("account_suspended", f"This account is {row.status}.")
    if row.paused_at is not None and not allow_paused:
        raise ProxyError("key_paused", KEY_PAUSED)
    allowed = row.allowed_models
    caller = Caller(
        key_id=row.id,
        account_id=row.account_id,
        allowed_models=allowed if isinstance(allowed, list) else None,
        rate_limit_rpm=row.rate_limit_rpm,
        opaque_user=opaque_user_id(row.account_id),
    )
    with _known_keys_lock:
        if len(_known_keys) >= KEY_CACHE_MAX:
            _known_keys.clear()
        _known_keys[digest] = (caller, time.monotonic())
    return caller


def refuse_invalid_key(message: str):
    """Count an invalid key against the client's address and raise its 401 (429 once the address
    presented too many this minute)."""
    wait = limits.record_invalid_key(get_redis(), client_address())
    if wait:
        raise ProxyError(
            "rate_limited",
            "Too many requests with invalid API keys from this address.",
            headers={"Retry-After": str(wait)},
        )
    raise ProxyError("invalid_api_key", message)


def forget_key(caller: Caller) -> None:
    with _known_keys_lock:
        for digest in [d for d, (c, _) in _known_keys.items() if c.key_id == caller.key_id]:
            del _known_keys[digest]


# --- models ----------------------------------------------------------------------------------


def split_model_name(name: str) -> tuple[str | None, str]:
    for prefix, provider in MODEL_PREFIXES.items():
        if name.startswith(prefix):
            return provider, name[len(prefix) :]
    return None, name


def resolve_cached_model(name: object, *, fresh: bool = False) -> catalog_cache.CachedModel:
    """The enabled catalogue model a request names, from this process's cache unless `fresh`;
    raises ProxyError 400/404. Metered requests use the cache: their hold checks its version."""
    if not isinstance(name, str) or not name:
        raise ProxyError("invalid_request", "'model' must be a non-empty string.", param="model")
    provider, model_id = split_model_name(name)
    if fresh:
        catalog_cache.forget(model_id)
    # Catalogue ids are ASCII; anything else is unknown without asking the database (which
    # could not even encode a lone surrogate).
    model = catalog_cache.cached_model(model_id) if model_id.isascii() else None
    if model is None or (provider and provider != model.priced.provider):
        raise model_not_found(
            name, provider, model_id if model is None and model_id.isascii() else None
        )
    metrics.note_provider(model.priced.provider)
    return model


UNAVAILABLE_MODEL_SQL = text(
    """
SELECT provider, status, retires_on, replacement_model_id FROM catalog_models
WHERE model_id = :model_id
"""
).columns(retires_on=Date())


def model_not_found(name: str, provider: str | None, model_id: str | None) -> ProxyError:
    """The 404 for a model the gateway does not sell. Only this miss path reads the catalogue
    again (`model_id` set: the cache found no enabled model of that ASCII id): a model the
    catalogue holds but does not sell says why, retired (when, and what replaces it) or not
    available; a model the catalogue does not hold, or one named with another provider's
    prefix, is unknown."""
    unknown = ProxyError("model_not_found", f"The model '{name}' does not exist or is not enabled.")
    if model_id is None:
        return unknown
    with db.engine.connect() as conn:
        row = conn.execute(UNAVAILABLE_MODEL_SQL, {"model_id": model_id}).first()
    if row is None or (provider and provider != row.provider):
        return unknown
    instead = f"; use '{row.replacement_model_id}' instead" if row.replacement_model_id else ""
    if row.status == "retired":
        when = f" on {row.retires_on.isoformat()}" if row.retires_on is not None else ""
        message = f"The model '{name}' was retired by its provider{when}{instead}."
    else:
        message = f"The model '{name}' is not available{instead}."
    return ProxyError("model_not_found", message)


def resolve_model(name: object) -> PricedModel:
    """The enabled catalogue model a request names, with its prices, read from the database (for
    calls that place no hold); raises ProxyError 400/404."""
    return resolve_cached_model(name, fresh=True).priced


# --- estimates -------------------------------------------------------------------------------


IMAGE_PART_TYPES = ("image", "image_url", "input_image")
IMAGE_PAYLOAD_KEYS = ("inlineData", "inline_data", "source", "image_url")
# Far deeper than any real request (a tool's schema nests a few dozen levels at most), and shallow
# enough that the gateway's own JSON encoding of the body never runs out of stack.
MAX_JSON_DEPTH = 128
NESTED_TOO_DEEPLY = f"The request body is nested more than {MAX_JSON_DEPTH} levels deep."


def measure_body(body: dict) -> tuple[int, int]:
    """(UTF-8 bytes of every string and number in the body, keys included; images), counting an
    image part once instead of its encoded bytes.

    Raises ProxyError 400 for what cannot be sent on: nesting deeper than MAX_JSON_DEPTH, or a
    string holding a lone surrogate (a `\\ud800` escape), which is not Unicode. The walk goes
    one level at a time, so the depth costs nothing extra.
    """
    text_bytes = images = depth = 0
    level: list[object] = [body]
    try:
        while level:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ProxyError("invalid_request", NESTED_TOO_DEEPLY)
            below: list[object] = []
            for item in level:
                if isinstance(item, str):
                    if item.startswith("data:image/"):
                        images += 1
                    else:
                        text_bytes += len(item.encode())
                elif isinstance(item, int | float) and not isinstance(item, bool):
                    text_bytes += len(repr(item))
                elif isinstance(item, dict):
                    if (
                        item.get("type") in IMAGE_PART_TYPES
                        or "inlineData" in item
                        or "inline_data" in item
                    ):
                        images += 1
                        item = {k: v for k, v in item.items() if k not in IMAGE_PAYLOAD_KEYS}
                    below.extend(item.values())
                    for key in item:
                        text_bytes += len(key.encode())
                elif isinstance(item, list):
                    below.extend(item)
            level = below
    except UnicodeEncodeError:
        raise ProxyError(
            "invalid_request",
            "The request body holds a lone surrogate (an unpaired \\ud800-\\udfff escape), "
            "which is not valid Unicode.",
        ) from None
    return text_bytes, images


def measure_input(body: dict, messages: int) -> InputSize:
    """What the body sends, for the hold's bound and the estimate (metering.InputSize). Raises
    ProxyError 400 as `measure_body` does."""
    text_bytes, images = measure_body(body)
    return InputSize(text_bytes, images, messages)


# --- the metered pipeline --------------------------------------------------------------------


def serve_metered(
    *,
    dialect: str,
    route: str,
    model_name: object,
    plan_for: Callable[[PricedModel], Plan],
) -> Response:
    """Run one metered request: `plan_for(model)` validates the request for its model (raising
    ProxyError) and says how to estimate, call and relay it."""
    refusals.note_model(model_name)
    caller = authenticate(fresh=False)
    model = resolve_cached_model(model_name)
    plan = plan_for(model.priced)
    request_id = g.request_id
    admit(caller, request_id)
    try:
        reservation, model, plan = _reserve(caller, model, plan, model_name, plan_for, request_id)
    except BaseException:
        limits.leave_inflight(get_redis(), caller.account_id, request_id)
        raise
    exchange = Exchange(
        dialect=dialect,
        route=route,
        caller=caller,
        model=model.priced,
        request_id=request_id,
        hold_id=reservation.hold_id,
        input_size=plan.estimate.input,
        output_limit=reservation.output_limit,
        gateway_set_limit=plan.estimate.requested_output is None,
        stream=plan.stream,
    )
    return forward(exchange, plan)


def admit(caller: Caller, request_id: str) -> None:
    """The key's requests per minute and the account's requests in flight, in one Redis round
    trip; raises ProxyError 429 (nothing left registered then)."""
    config = current_app.config
    refusal, wait = limits.admit_request(
        get_redis(),
        key_id=caller.key_id,
        rpm_limit=caller.rate_limit_rpm or config["RATE_LIMIT_RPM"],
        account_id=caller.account_id,
        request_id=request_id,
        max_in_flight=config["MAX_CONCURRENT_PER_ACCOUNT"],
    )
    if refusal == "rpm":
        raise ProxyError(
            "rate_limited",
            "Too many requests for this API key; slow down.",
            headers={"Retry-After": str(wait)},
        )
    if refusal == "in_flight":
        raise ProxyError(
            "rate_limited",
            "Too many requests in flight for this account.",
            headers={"Retry-After": str(wait)},
        )


def check_allowed(caller: Caller, model: PricedModel) -> None:
    """The key's model allow-list, for calls that place no hold (the hold statement checks it for
    metered ones); raises ProxyError 403."""
    if caller.allowed_models is not None and model.model_id not in caller.allowed_models:
        raise ProxyError("model_not_allowed", f"This API key may not use '{model.model_id}'.")


def admit_unmetered(caller: Caller, model: PricedModel) -> None:
    """The allow-list and the per-minute limit for a call that is not metered (count_tokens)."""
    check_allowed(caller, model)
    limit = caller.rate_limit_rpm or current_app.config["RATE_LIMIT_RPM"]
    wait = limits.take_request_slot(get_redis(), caller.key_id, limit)
    if wait:
        raise ProxyError(
            "rate_limited",
            "Too many requests for this API key; slow down.",
            headers={"Retry-After": str(wait)},
        )


def hold_request(
    caller: Caller, model: catalog_cache.CachedModel, estimate: Estimate, request_id: str
) -> holds.HoldRequest:
    priced = model.priced
    read_timeout = current_app.config["UPSTREAM_READ_TIMEOUT"]
    return holds.HoldRequest(
        account_id=caller.account_id,
        key_id=caller.key_id,
        model_pk=model.pk,
        model_version=model.version,
        model_id=priced.model_id,
        input_cost=cost_bound(
            estimate.input_tokens, priced.input_price_bound(estimate.input_tokens)
        ),
        output_price=priced.output_price(estimate.input_tokens),
        requested_output=estimate.requested_output,
        max_output_tokens=priced.max_output_tokens,
        choices=estimate.choices,
        request_id=request_id,
        expires_at=utcnow() + timedelta(seconds=read_timeout * 2 + 3600),
    )


def _reserve(caller, model, plan, model_name, plan_for, request_id):
    """Place the hold; when the cached model turns out stale, reload it and plan again (once).

    Returns (reservation, model, plan); raises ProxyError for every refusal.
    """
    outcome = holds.reserve(hold_request(caller, model, plan.estimate, request_id))
    if isinstance(outcome, holds.Refusal) and outcome.reason == "catalog_changed":
        model = resolve_cached_model(model_name, fresh=True)
        plan = plan_for(model.priced)
        outcome = holds.reserve(hold_request(caller, model, plan.estimate, request_id))
    if isinstance(outcome, holds.Refusal):
        raise refusal_error(outcome, caller, model.priced)
    return outcome, model, plan


KEY_REFUSALS = {
    "key_invalid": "Invalid API key.",
    "key_revoked": "This API key is revoked or expired.",
    "key_expired": "This API key is revoked or expired.",
}


def refusal_error(refusal: holds.Refusal, caller: Caller, model: PricedModel) -> ProxyError:
    """The error a refused hold answers with (401, 402, 403; a 503 to retry when the catalogue
    changed twice while this request was planned)."""
    reason = refusal.reason
    if reason in KEY_REFUSALS:
        forget_key(caller)
        return ProxyError("invalid_api_key", KEY_REFUSALS[reason])
    if reason == "key_paused":
        return ProxyError("key_paused", KEY_PAUSED)
    if reason == "account_not_active":
        forget_key(caller)
        return ProxyError("account_suspended", f"This account is {refusal.account_status}.")
    if reason == "model_not_allowed":
        return ProxyError("model_not_allowed", f"This API key may not use '{model.model_id}'.")
    if reason in ("insufficient_credits", "key_limit_reached"):
        max_out = refusal.max_affordable_output_tokens
        message = (
            "This request needs more credit than is available"
            + (" under this key's limit." if reason == "key_limit_reached" else ".")
            + (f" At most {max_out} output tokens are affordable." if max_out else "")
        )
        return ProxyError(
            reason,
            message,
            metadata={
                "balance": nanos_to_credits(refusal.balance),
                "held": nanos_to_credits(refusal.held),
                "required": nanos_to_credits(refusal.required),
                "max_affordable_output_tokens": max_out,
            },
        )
    return ProxyError(
        "gateway_unavailable",
        "The model's prices changed while this request was prepared; retry it.",
        headers={"Retry-After": "1", "x-should-retry": "true"},
    )


def forward(exchange: Exchange, plan: Plan) -> Response:
    """Call upstream and answer: relayed as a stream, or as one JSON body.

    Google keeps billing a generation its client left, so Gemini streams are drained to their
    final counts; and google-genai reads any non-`data:` line as an error, so no keep-alives there.
    Whatever fails before the answer is under way releases the hold (settles at no charge).
    """
    app = current_app._get_current_object()
    refusals.upstream_reached()
    try:
        response = call_upstream(exchange, plan.upstream_call(exchange))
        relay = plan.relay()
        if not exchange.stream:
            return json_response(finish_json(exchange, response, relay), limit_headers(exchange))
        streamed = stream_response(
            exchange,
            response,
            relay,
            drain_on_disconnect=exchange.model.provider == "google",
            keepalives=exchange.dialect != GOOGLE,
            headers=stream_headers(exchange),
        )
    except BaseException:
        settle(app, exchange, None, "upstream_error")
        raise
    streamed.mimetype = plan.stream_mimetype
    return streamed


def json_response(body: dict, headers: dict) -> Response:
    response = Response(
        json.dumps(body, separators=(",", ":")), status=200, mimetype="application/json"
    )
    response.headers.update(headers)
    return response


# --- relaying --------------------------------------------------------------------------------


def call_upstream(exchange: Exchange, call: UpstreamCall) -> UpstreamResponse:
    """Send the call; on failure settle (no charge) and raise the mapped ProxyError."""
    app = current_app._get_current_object()
    try:
        response = send(call)
    except ProxyError:
        settle(app, exchange, None, "upstream_error")
        raise
    if response.status_code >= 400:
        error = error_from_response(call.provider, response)
        response.close()
        settle(app, exchange, None, "upstream_error")
        raise error
    return response


def finish_json(exchange: Exchange, response: UpstreamResponse, relay: Relay) -> dict:
    """A non-streaming answer: translate it, settle, return the client's body."""
    app = current_app._get_current_object()
    try:
        upstream = response.json()
        if not isinstance(upstream, dict | list):
            raise ValueError("not an object")
        body = relay.response_body(upstream)
    except (ValueError, KeyError, TypeError, urllib3.exceptions.HTTPError, OSError):
        settle(app, exchange, relay, "upstream_error")
        raise ProxyError("upstream_error", "The provider sent a malformed answer.") from None
    exchange.first_token_at = time.monotonic()
    settle(app, exchange, relay, "ok")
    return body


def stream_headers(exchange: Exchange) -> dict:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    headers.update(limit_headers(exchange))
    return headers


def limit_headers(exchange: Exchange) -> dict:
    if exchange.gateway_set_limit:
        return {"x-onekey-max-tokens": str(exchange.output_limit)}
    return {}


# OneKey's own stores failing to answer (database down, pool exhausted, Redis away).
STORE_UNAVAILABLE = (
    sqlalchemy_exc.OperationalError,
    sqlalchemy_exc.InterfaceError,
    sqlalchemy_exc.TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
)


def proxy_errors(dialect: str) -> Callable:
    """Decorator: a ProxyError raised by the view becomes the dialect's error response, and so
    does a database or Redis that did not answer (a 503 the SDKs retry)."""

    def wrap(view):
        def wrapped(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except ProxyError as error:
                refusals.record_refusal(error)
                return error_response(error, dialect, g.request_id)
            except STORE_UNAVAILABLE as exc:
                log.warning("proxy request refused, a store is unavailable: %s", type(exc).__name__)
                db.session.rollback()
                error = ProxyError(
                    "gateway_unavailable",
                    "OneKey is briefly unable to serve this request; retry shortly.",
                    headers={"Retry-After": "1", "x-should-retry": "true"},
                )
                return error_response(error, dialect, g.request_id)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped

    return wrap
