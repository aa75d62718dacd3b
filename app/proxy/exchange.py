"""One proxied request from its hold to its settlement, and the settlement itself."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from flask import Flask

from app import metrics
from app.proxy import limits
from app.proxy.metering import InputSize, PricedModel, cost_of, list_cost_of
from app.proxy.relay import Relay
from app.services.usage import record_usage, settlement_usage
from app.tasks.billing import enqueue_settlement

log = logging.getLogger("onekey.proxy")


@dataclass(frozen=True)
class Caller:
    key_id: int
    account_id: int
    allowed_models: list[str] | None
    rate_limit_rpm: int | None
    opaque_user: str


@dataclass
class Exchange:
    """One proxied request, from the hold to its settlement."""

    dialect: str
    route: str
    caller: Caller
    model: PricedModel
    request_id: str
    hold_id: int
    input_size: InputSize
    output_limit: int
    gateway_set_limit: bool
    stream: bool
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    settled: bool = False


def settle(app: Flask, exchange: Exchange, relay: Relay | None, status: str) -> int:
    """Record usage and debit the actual cost, exactly once; returns the cost in nanocredits.

    `status` is the outcome when the relay proved no usage (services.usage.settlement_usage
    decides from what it proved). One database statement; when the database cannot take it, the
    provider's counts go to the worker, which retries.
    """
    if exchange.settled:
        return 0
    exchange.settled = True
    status, usage, basis = settlement_usage(
        status,
        usage=relay.usage if relay is not None else None,
        usage_complete=relay is not None and relay.usage_complete,
        delivered_bytes=relay.delivered_bytes if relay is not None else 0,
        provider_failed=relay is not None and relay.failed,
        input_size=exchange.input_size,
    )
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
        "list_cost": list_cost_of(exchange.model, usage),
        "prices_applied": prices,
        "latency_ms": int(elapsed * 1000),
        "time_to_first_token_ms": int(ttft * 1000) if ttft is not None else None,
        "estimate_basis": basis,
    }
    metrics.observe_settlement(exchange.model.provider, status, elapsed, ttft)
    with app.app_context():
        try:
            record_usage(values)
        except Exception:
            # The provider's counts must not be lost with the database: the worker retries.
            log.exception("settlement of hold %s failed; queued for the worker", exchange.hold_id)
            metrics.count_settlement_failure(exchange.model.provider)
            enqueue_settlement(values)
        finally:
            limits.leave_inflight(
                app.extensions["onekey_redis"], exchange.caller.account_id, exchange.request_id
            )
    return cost
