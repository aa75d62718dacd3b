"""What the public API documentation (/docs) and the model pages (/models/<id>) say, read from
the code that does it: the error kinds of app/proxy/errors.py, the limits in the config, the
catalogue's models and prices. A page built from these cannot drift from the gateway."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import urllib3
from flask import current_app, request
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel
from app.models.catalog import PRICE_CLASSES
from app.proxy.errors import (
    ANTHROPIC,
    CONDITIONS,
    GOOGLE,
    NO_RETRY_STATUSES,
    OPENAI,
    STATUS_TYPES,
    UNPRICEABLE,
    ProxyError,
    error_body,
)
from app.proxy.gateway import MAX_JSON_DEPTH, MODEL_PREFIXES, split_model_name
from app.proxy.gemini import VERSIONS as GEMINI_VERSIONS
from app.proxy.limits import INVALID_KEY_LIMIT_PER_MINUTE
from app.proxy.metering import IMAGE_TOKEN_ALLOWANCE
from app.proxy.upstream import UpstreamResponse, error_from_response
from app.services.catalog import load_catalog
from app.services.pricing import class_label

# What the reader replaces with their own key (in the one line that exports it).
KEY_PLACEHOLDER = "ok-YOUR-KEY"
KEY_VARIABLE = "ONEKEY_API_KEY"

# When each error kind of app/proxy/errors.py happens. tests/web/test_docs.py fails on a kind
# without its sentence, so a new kind cannot reach the gateway undocumented.
CONDITION_DESCRIPTIONS: dict[str, str] = {
    "invalid_request": (
        "The body is not JSON, a parameter is missing or wrong, the model belongs to another "
        "provider than the native route's, or the request uses something OneKey cannot price."
    ),
    "invalid_api_key": "The key is missing, unknown, revoked or expired.",
    "insufficient_credits": (
        "The account's available credit (balance minus what is held for requests in flight) "
        "does not cover the request's reservation."
    ),
    "key_limit_reached": "What is left under the key's own credit limit does not cover it.",
    "account_suspended": "The account is suspended, closed or terminated.",
    "model_not_allowed": "The key is restricted to other models.",
    "key_paused": "The key is paused by its owner (resume it on the keys page).",
    "model_not_found": "The model is unknown or not enabled.",
    "route_not_found": "No such path under /v1, /anthropic or /gemini.",
    "method_not_allowed": "The path is served with another method, which the Allow header names.",
    "request_too_large": "The body is larger than the request size limit (see Limits).",
    "rate_limited": (
        "Too many requests this minute for the key, too many in flight for the account, too "
        "many invalid keys from your address, or the provider's own rate limit."
    ),
    "upstream_error": (
        "The provider failed (a 5xx), sent a malformed answer, could not be reached, or refused "
        "OneKey's own credentials."
    ),
    "provider_unavailable": "The operator has not configured this model's provider.",
    "upstream_timeout": "The provider did not answer in time.",
    "gateway_unavailable": (
        "OneKey's own database or Redis did not answer in time, or the model's prices changed "
        "while the request was prepared. Nothing was reserved: retry."
    ),
}

DIALECTS = (OPENAI, ANTHROPIC, GOOGLE)

# The model page's names for the classes that read the same for every provider (cache writes
# are named by the provider's lifetimes: pricing.class_label).
PRICE_CLASS_LABELS = {
    "input": "Input",
    "cache_read": "Cached input (cache read)",
    "output": "Output (reasoning and thinking included)",
}
INPUT_KINDS = {
    "text": "Text",
    "image": "Images",
    "pdf": "PDF documents",
    "audio": "Audio",
    "video": "Video",
}
PROVIDER_PREFIXES = {provider: prefix for prefix, provider in MODEL_PREFIXES.items()}
# The models the docs' examples use, one per provider, while they are enabled.
EXAMPLE_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "google": "gemini-3.5-flash-lite",
    "xai": "grok-3-mini",
}


def base_url() -> str:
    """The URL customers use: PUBLIC_BASE_URL, else the host this page was asked for."""
    return current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")


def example_models() -> dict[str, str]:
    """A model id per provider for the examples: the usual one, or the provider's first
    enabled model when an admin disabled it (an example must run as pasted)."""
    enabled = db.session.execute(
        select(CatalogModel.provider, CatalogModel.model_id)
        .where(CatalogModel.enabled.is_(True))
        .order_by(CatalogModel.model_id)
    ).all()
    chosen = {}
    for provider, default in EXAMPLE_MODELS.items():
        ids = [model_id for p, model_id in enabled if p == provider]
        chosen[provider] = default if default in ids or not ids else ids[0]
    return chosen


# --- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRow:
    """One error kind as each dialect spells it, read from the gateway's own error bodies."""

    condition: str
    status: int
    description: str
    openai_type: str
    openai_code: str
    anthropic_type: str
    google_status: str
    no_retry: bool


def _row(condition: str, error: ProxyError, description: str) -> ErrorRow:
    openai = error_body(error, OPENAI)["error"]
    return ErrorRow(
        condition=condition,
        status=error.status,
        description=description,
        openai_type=openai["type"],
        openai_code=openai["code"],
        anthropic_type=error_body(error, ANTHROPIC)["error"]["type"],
        google_status=error_body(error, GOOGLE)["error"]["status"],
        no_retry=error.status in NO_RETRY_STATUSES,
    )


def error_rows() -> list[ErrorRow]:
    """Every error kind the gateway answers with, by status."""
    rows = [
        _row(condition, ProxyError(condition, ""), CONDITION_DESCRIPTIONS[condition])
        for condition in CONDITIONS
    ]
    return sorted(rows, key=lambda row: row.status)


# The provider statuses the table of provider answers shows.
PROVIDER_STATUSES = tuple(sorted({*STATUS_TYPES, *NO_RETRY_STATUSES, 500, 502, 504}))


def provider_error_rows() -> list[tuple[int, ErrorRow]]:
    """(provider's status, what the client gets) for each of PROVIDER_STATUSES, mapped by the
    gateway's own `error_from_response` from a real HTTP response with that status."""
    rows = []
    for status in PROVIDER_STATUSES:
        answer = urllib3.HTTPResponse(
            body=b'{"error": {"message": "the provider\'s message"}}', status=status
        )
        error = error_from_response("openai", UpstreamResponse(answer))
        rows.append((status, _row(error.condition, error, "")))
    return rows


def sample_error_bodies() -> dict[str, str]:
    """A 402 as each dialect carries it, built by the gateway's own error code (as JSON text,
    its keys in the order the gateway writes them)."""
    error = ProxyError(
        "insufficient_credits",
        "This request needs more credit than is available. At most 1200 output tokens are "
        "affordable.",
        metadata={
            "balance": "0.25",
            "held": "0.2",
            "required": "0.061",
            "max_affordable_output_tokens": 1200,
        },
    )
    return {dialect: json.dumps(error_body(error, dialect), indent=2) for dialect in DIALECTS}


def unpriceable_features() -> list[str]:
    """Why each feature the catalogue cannot price is refused, as sentences."""
    return [reason[0].upper() + reason[1:] for reason in UNPRICEABLE.values()]


# --- limits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int
    requests_per_minute: int
    in_flight_per_account: int
    invalid_keys_per_minute: int
    max_json_depth: int
    connect_timeout_seconds: int
    read_timeout_seconds: int
    image_token_allowance: int


def limits() -> Limits:
    config = current_app.config
    return Limits(
        max_request_bytes=config["MAX_REQUEST_BYTES"],
        requests_per_minute=config["RATE_LIMIT_RPM"],
        in_flight_per_account=config["MAX_CONCURRENT_PER_ACCOUNT"],
        invalid_keys_per_minute=INVALID_KEY_LIMIT_PER_MINUTE,
        max_json_depth=MAX_JSON_DEPTH,
        connect_timeout_seconds=config["UPSTREAM_CONNECT_TIMEOUT"],
        read_timeout_seconds=config["UPSTREAM_READ_TIMEOUT"],
        image_token_allowance=IMAGE_TOKEN_ALLOWANCE,
    )


def byte_size(count: int) -> str:
    """20971520 -> '20 MB (20,971,520 bytes)', in the binary megabytes the default is set in."""
    megabytes = count / (1024 * 1024)
    shown = f"{megabytes:.0f}" if count % (1024 * 1024) == 0 else f"{megabytes:.1f}"
    return f"{shown} MB ({count:,} bytes)"


# --- models ----------------------------------------------------------------------------------


def enabled_model(model_id: str) -> CatalogModel | None:
    return db.session.scalar(
        select(CatalogModel).where(
            CatalogModel.model_id == model_id, CatalogModel.enabled.is_(True)
        )
    )


def unavailable_model(model_id: str) -> CatalogModel | None:
    """A model the catalogue holds but does not sell (retired, or disabled by an admin)."""
    return db.session.scalar(
        select(CatalogModel).where(
            CatalogModel.model_id == model_id, CatalogModel.enabled.is_(False)
        )
    )


def canonical_model_id(requested: str) -> str | None:
    """The catalogue id a prefixed form (`openai/gpt-4o`) names, if that model is enabled and of
    that provider; None otherwise."""
    provider, model_id = split_model_name(requested)
    if provider is None:
        return None
    model = enabled_model(model_id)
    return model.model_id if model is not None and model.provider == provider else None


@cache
def _bundled_input_kinds() -> dict[str, tuple[str, ...]]:
    kinds = {}
    for entry in load_catalog():
        declared = tuple(entry.get("input_modalities", ()))
        unknown = set(declared) - set(INPUT_KINDS)
        if unknown:
            raise ValueError(f"{entry['id']}: unknown input modalities {sorted(unknown)}")
        kinds[entry["id"]] = declared
    return kinds


def input_kinds(model_id: str) -> list[str]:
    """What the model reads, as the bundled catalogue records it (labels, in INPUT_KINDS order);
    empty for a model the file does not describe."""
    declared = _bundled_input_kinds().get(model_id, ())
    return [label for kind, label in INPUT_KINDS.items() if kind in declared]


@dataclass(frozen=True)
class PriceRow:
    token_class: str
    label: str
    by_tier: tuple[int, ...]  # nanocredits per 1M tokens, one per tier
    as_input: tuple[bool, ...]  # the tier lists no price for the class: it bills as input


def price_rows(
    tiers: dict[int, dict[str, int]], provider: str | None = None
) -> tuple[list[int], list[PriceRow]]:
    """(tier thresholds in order, one row per token class any tier bills). A class a tier lists
    no price for is billed at that tier's input price (metering.cost_of), and shown so."""
    thresholds = sorted(tiers)
    rows = [
        PriceRow(
            token_class=token_class,
            label=PRICE_CLASS_LABELS.get(token_class) or class_label(token_class, provider),
            by_tier=tuple(tiers[t].get(token_class, tiers[t]["input"]) for t in thresholds),
            as_input=tuple(token_class not in tiers[t] for t in thresholds),
        )
        for token_class in PRICE_CLASSES
        if any(token_class in tiers[t] for t in thresholds)
    ]
    return thresholds, rows


def model_routes(model: CatalogModel) -> list[str]:
    """The routes that serve `model` (app/proxy/views.py)."""
    routes = ["POST /v1/chat/completions"]
    if model.provider in ("openai", "xai"):
        routes.append("POST /v1/responses")
    if model.provider == "anthropic":
        routes += ["POST /anthropic/v1/messages", "POST /anthropic/v1/messages/count_tokens"]
    if model.provider == "google":
        versions = ",".join(GEMINI_VERSIONS)
        routes += [
            f"POST /gemini/{{{versions}}}/models/{model.model_id}:{action}"
            for action in ("generateContent", "streamGenerateContent")
        ]
    return routes
