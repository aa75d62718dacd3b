"""The request pipeline every proxy route shares.

authenticate -> resolve the model -> rate limits -> hold (one commit, then the database connection is
given back) -> call upstream -> relay -> settle exactly once (a second commit), on every path.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import requests
from flask import Flask, current_app, g, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import select, update

from app.extensions import db, get_redis
from app.models import Account, ApiKey, CatalogModel
from app.models.types import utcnow
from app.proxy import limits
from app.proxy.errors import ProxyError, error_response
from app.proxy.metering import (
    IMAGE_TOKEN_ALLOWANCE,
    MESSAGE_TOKEN_ALLOWANCE,
    REQUEST_TOKEN_ALLOWANCE,
    PricedModel,
    Usage,
    affordable_output_tokens,
    cost_bound,
    cost_of,
    estimate_output_tokens,
)
from app.proxy.relay import Relay
from app.proxy.upstream import UpstreamCall, error_from_response, send
from app.services import ledger
from app.services.catalog import price_table
from app.services.keys import KEY_PREFIX, hash_key
from app.services.money import nanos_to_credits
from app.services.usage import record_usage
from app.tasks.billing import enqueue_settlement

log = logging.getLogger("onekey.proxy")

MODEL_PREFIXES = {
    "openai/": "openai",
    "anthropic/": "anthropic",
    "google/": "google",
    "x-ai/": "xai",
}
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass
class Caller:
    key_id: int
    account_id: int
    allowed_models: list[str] | None
    rate_limit_rpm: int | None
    opaque_user: str


@dataclass
class Estimate:
    """What the hold is computed from (DESIGN.md, "Holds")."""

    input_tokens: int
    requested_output: int | None  # the client's own limit, if it set one
    choices: int = 1


@dataclass
class Exchange:
    """One proxied request, from the hold to its settlement."""

    dialect: str
    route: str
    caller: Caller
    model: PricedModel
    request_id: str
    hold_id: int
    input_estimate: int
    output_limit: int
    gateway_set_limit: bool
    stream: bool
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    settled: bool = False


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


def authenticate() -> Caller:
    """The calling key and its account, read fresh from the database on every request.

    Raises ProxyError 401 (missing, unknown, revoked, expired), 403 (account not active) or 429
    (an address that keeps presenting invalid keys).
    """
    redis = get_redis()
    address = client_address()
    wait = limits.invalid_key_wait(redis, address)
    if wait:
        raise ProxyError(
            "rate_limited",
            "Too many requests with invalid API keys from this address.",
            headers={"Retry-After": str(wait)},
        )
    plaintext = presented_key()
    if not plaintext:
        raise ProxyError(
            "invalid_api_key",
            "Missing API key: send it as 'Authorization: Bearer ok-...'.",
        )
    row = None
    if plaintext.startswith(KEY_PREFIX) and len(plaintext) == len(KEY_PREFIX) + 43:
        row = db.session.execute(
            select(ApiKey, Account.status)
            .join(Account, Account.id == ApiKey.account_id)
            .where(ApiKey.key_hash == hash_key(plaintext))
        ).first()
    now = utcnow()
    if (
        row is None
        or row[0].revoked_at is not None
        or (row[0].expires_at is not None and row[0].expires_at <= now)
    ):
        limits.record_invalid_key(redis, address)
        reason = "Invalid API key." if row is None else "This API key is revoked or expired."
        raise ProxyError("invalid_api_key", reason)
    key, account_status = row
    if account_status != "active":
        raise ProxyError("account_suspended", f"This account is {account_status}.")
    return Caller(
        key_id=key.id,
        account_id=key.account_id,
        allowed_models=key.allowed_models,
        rate_limit_rpm=key.rate_limit_rpm,
        opaque_user=opaque_user_id(key.account_id),
    )


# --- models ----------------------------------------------------------------------------------


def split_model_name(name: str) -> tuple[str | None, str]:
    for prefix, provider in MODEL_PREFIXES.items():
        if name.startswith(prefix):
            return provider, name[len(prefix) :]
    return None, name


def resolve_model(name: object) -> PricedModel:
    """The enabled catalogue model a request names; raises ProxyError 400/404."""
    if not isinstance(name, str) or not name:
        raise ProxyError("invalid_request", "'model' must be a non-empty string.", param="model")
    provider, model_id = split_model_name(name)
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == model_id))
    if model is None or not model.enabled or (provider and provider != model.provider):
        raise ProxyError("model_not_found", f"The model '{name}' does not exist or is not enabled.")
    return PricedModel(
        provider=model.provider,
        model_id=model.model_id,
        name=model.name,
        context_length=model.context_length,
        max_output_tokens=model.max_output_tokens,
        tiers=price_table(model),
    )


# --- estimates -------------------------------------------------------------------------------


IMAGE_PART_TYPES = ("image", "image_url", "input_image")
IMAGE_PAYLOAD_KEYS = ("inlineData", "inline_data", "source", "image_url")


def estimate_input_tokens(body: dict, messages: int) -> int:
    """A bound on the prompt's tokens: UTF-8 bytes of every string and number in the body, keys
    included (a tool's JSON schema reaches the model whole; no token is shorter than a byte), a
    fixed allowance per image instead of its encoded bytes, and framing allowances per message and
    per request."""
    text_bytes = images = 0
    stack: list[object] = [body]
    while stack:
        item = stack.pop()
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
            stack.extend(item.values())
            stack.extend(key for key in item if isinstance(key, str))
        elif isinstance(item, list):
            stack.extend(item)
    return (
        text_bytes
        + images * IMAGE_TOKEN_ALLOWANCE
        + messages * MESSAGE_TOKEN_ALLOWANCE
        + REQUEST_TOKEN_ALLOWANCE
    )


# --- holds -----------------------------------------------------------------------------------


def _refusal_402(
    condition: str, message: str, balance: int, held: int, required: int, max_out: int
):
    return ProxyError(
        condition,
        message,
        metadata={
            "balance": nanos_to_credits(balance),
            "held": nanos_to_credits(held),
            "required": nanos_to_credits(required),
            "max_affordable_output_tokens": max_out,
        },
    )


def admit(caller: Caller, model: PricedModel) -> None:
    """The model allow-list and the per-key requests-per-minute limit, checked for every call
    (metered or not); gives the connection back. Raises ProxyError 403 or 429."""
    if caller.allowed_models is not None and model.model_id not in caller.allowed_models:
        raise ProxyError("model_not_allowed", f"This API key may not use '{model.model_id}'.")
    db.session.close()  # the model lookup's transaction ends before the Redis calls
    limit = caller.rate_limit_rpm or current_app.config["RATE_LIMIT_RPM"]
    wait = limits.take_request_slot(get_redis(), caller.key_id, limit)
    if wait:
        raise ProxyError(
            "rate_limited",
            "Too many requests for this API key; slow down.",
            headers={"Retry-After": str(wait)},
        )


def open_exchange(
    *,
    dialect: str,
    route: str,
    model: PricedModel,
    caller: Caller,
    estimate: Estimate,
    stream: bool,
) -> Exchange:
    """Check limits and reserve credit for one request; commits, then gives the connection back.

    Raises ProxyError 402/403/429. The output limit is the client's, or (when it set none) the
    model's maximum capped at what the account can afford.
    """
    config = current_app.config
    admit(caller, model)
    redis = get_redis()
    request_id = g.request_id
    if not limits.enter_inflight(
        redis, caller.account_id, request_id, config["MAX_CONCURRENT_PER_ACCOUNT"]
    ):
        raise ProxyError(
            "rate_limited",
            "Too many requests in flight for this account.",
            headers={"Retry-After": "1"},
        )
    try:
        return _reserve(dialect, route, model, caller, estimate, stream, request_id)
    except BaseException:
        limits.leave_inflight(redis, caller.account_id, request_id)
        db.session.rollback()
        raise
    finally:
        db.session.close()


def _reserve(dialect, route, model, caller, estimate, stream, request_id) -> Exchange:
    account = db.session.get(Account, caller.account_id)
    key = db.session.get(ApiKey, caller.key_id)
    available = account.balance_nanocredits - account.held_nanocredits
    key_remaining = None
    if key.limit_nanocredits is not None:
        key_remaining = key.limit_nanocredits - key.usage_nanocredits - key.held_nanocredits
    spendable = available if key_remaining is None else min(available, key_remaining)
    condition = (
        "key_limit_reached"
        if key_remaining is not None and key_remaining < available
        else "insufficient_credits"
    )
    input_cost = cost_bound(estimate.input_tokens, model.input_price_bound(estimate.input_tokens))
    output_price = model.output_price(estimate.input_tokens)
    max_out = affordable_output_tokens(spendable - input_cost, output_price, estimate.choices)
    gateway_set_limit = estimate.requested_output is None
    if gateway_set_limit:
        output_limit = min(model.max_output_tokens, max_out)
    else:
        output_limit = estimate.requested_output
    required = input_cost + cost_bound(output_limit * estimate.choices, output_price)
    if output_limit < 1 or required > spendable:
        wanted = max(output_limit, 1)
        raise _refusal_402(
            condition,
            "This request needs more credit than is available"
            + (" under this key's limit." if condition == "key_limit_reached" else ".")
            + (f" At most {max_out} output tokens are affordable." if max_out else ""),
            account.balance_nanocredits,
            account.held_nanocredits,
            input_cost + cost_bound(wanted * estimate.choices, output_price),
            max_out,
        )
    config = current_app.config
    try:
        hold = ledger.place_hold(
            account_id=caller.account_id,
            api_key_id=caller.key_id,
            amount_nanocredits=max(required, 1),
            expires_at=utcnow() + timedelta(seconds=config["UPSTREAM_READ_TIMEOUT"] * 2 + 3600),
            request_id=request_id,
        )
    except ledger.AccountNotActive as exc:
        raise ProxyError("account_suspended", f"This account is {exc.status}.") from None
    except ledger.KeyNotUsable as exc:
        if exc.reason == "limit_reached":
            raise _refusal_402(
                "key_limit_reached",
                "This API key has reached its credit limit.",
                account.balance_nanocredits,
                account.held_nanocredits,
                required,
                max_out,
            ) from None
        raise ProxyError("invalid_api_key", "This API key is revoked or expired.") from None
    except ledger.InsufficientCredit as exc:
        raise _refusal_402(
            "insufficient_credits",
            "This request needs more credit than is available.",
            exc.balance,
            exc.held,
            required,
            max_out,
        ) from None
    now = utcnow()
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == caller.key_id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )
    db.session.commit()
    return Exchange(
        dialect=dialect,
        route=route,
        caller=caller,
        model=model,
        request_id=request_id,
        hold_id=hold.id,
        input_estimate=estimate.input_tokens,
        output_limit=output_limit,
        gateway_set_limit=gateway_set_limit,
        stream=stream,
    )


# --- settlement ------------------------------------------------------------------------------


def settle(app: Flask, exchange: Exchange, relay: Relay | None, status: str) -> int:
    """Record usage and debit the actual cost, exactly once; returns the cost in nanocredits.

    `status` is the outcome when the relay proved no usage; a relay with usage decides between
    ok, partial and estimated itself.
    """
    if exchange.settled:
        return 0
    exchange.settled = True
    usage = relay.usage if relay is not None else None
    if status != "upstream_error":
        if usage is not None:
            status = "ok" if relay.usage_complete else "partial"
            if not relay.usage_complete:
                # Counts seen before the end (Anthropic's message_start says 1 output token) lag
                # what was delivered, and the provider bills all it generated.
                delivered = estimate_output_tokens(relay.delivered_bytes)
                if delivered > usage.output:
                    usage = replace(usage, output=delivered)
        elif relay is not None and relay.delivered_bytes:
            status = "estimated"
            usage = Usage(
                input=exchange.input_estimate,
                output=estimate_output_tokens(relay.delivered_bytes),
                prompt_tokens=exchange.input_estimate,
            )
        elif relay is not None and relay.failed:
            status = "upstream_error"  # the provider's own error came first: nothing to bill
    usage = usage or Usage()
    cost, prices = cost_of(exchange.model, usage)
    elapsed = time.monotonic() - exchange.started
    ttft = exchange.first_token_at - exchange.started if exchange.first_token_at else None
    values = {
        "account_id": exchange.caller.account_id,
        "api_key_id": exchange.caller.key_id,
        "hold_id": exchange.hold_id,
        "request_id": exchange.request_id,
        "provider": exchange.model.provider,
        "model_id": exchange.model.model_id,
        "route": exchange.route,
        "status": status,
        "streamed": exchange.stream,
        "input_tokens": usage.input,
        "cache_read_tokens": usage.cache_read,
        "cache_write_5m_tokens": usage.cache_write_5m,
        "cache_write_1h_tokens": usage.cache_write_1h,
        "output_tokens": usage.output,
        "reasoning_tokens": usage.reasoning,
        "cost_nanocredits": cost,
        "prices_applied": prices,
        "latency_ms": int(elapsed * 1000),
        "time_to_first_token_ms": int(ttft * 1000) if ttft is not None else None,
    }
    with app.app_context():
        try:
            record_usage(values)
            db.session.commit()
        except Exception:
            db.session.rollback()
            # The provider's counts must not be lost with the database: the worker retries.
            log.exception("settlement of hold %s failed; queued for the worker", exchange.hold_id)
            enqueue_settlement(values)
        finally:
            db.session.remove()
            limits.leave_inflight(
                app.extensions["onekey_redis"], exchange.caller.account_id, exchange.request_id
            )
    return cost


# --- relaying --------------------------------------------------------------------------------


def call_upstream(exchange: Exchange, call: UpstreamCall) -> requests.Response:
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


def finish_json(exchange: Exchange, response: requests.Response, relay: Relay) -> dict:
    """A non-streaming answer: translate it, settle, return the client's body."""
    app = current_app._get_current_object()
    try:
        upstream = response.json()
        if not isinstance(upstream, dict | list):
            raise ValueError("not an object")
        body = relay.response_body(upstream)
    except (ValueError, KeyError, TypeError, requests.RequestException):
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
