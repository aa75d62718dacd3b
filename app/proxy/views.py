"""The API surface customers' applications call."""

from __future__ import annotations

from flask import jsonify

from app.proxy import bp
from app.services.catalog import enabled_models, price_table
from app.services.money import NANOS_PER_CREDIT
from app.services.pricing import TOKENS_PER_PRICE_UNIT

NANOS_PER_TOKEN_PRICE_UNIT = NANOS_PER_CREDIT * TOKENS_PER_PRICE_UNIT
PER_TOKEN_DECIMALS = 15


def per_token_price(nanos_per_mtok: int) -> str:
    """Credits per single token as an exact plain decimal string (at most 15 decimals)."""
    whole, frac = divmod(nanos_per_mtok, NANOS_PER_TOKEN_PRICE_UNIT)
    frac_text = f"{frac:0{PER_TOKEN_DECIMALS}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


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
