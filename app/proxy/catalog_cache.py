"""The catalogue models the proxy sells, cached per process and checked on every hold.

A cached copy carries the model's `version`, which database triggers change with every change to the
model or its prices (migration 0003). The hold statement refuses a copy whose version is no longer
the database's (or whose model was disabled), so a disabled model or a changed price applies to the
very next request in every process: the gateway then forgets the copy and reloads it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import text

from app.extensions import db
from app.proxy.metering import PricedModel

MODEL_SQL = text(
    """
SELECT m.id, m.version, m.provider, m.name, m.context_length, m.max_output_tokens,
       p.tier_threshold_tokens, p.token_class, p.sell_price, p.list_price
FROM catalog_models m JOIN model_prices p ON p.model_pk = m.id
WHERE m.model_id = :model_id AND m.enabled
"""
)


@dataclass(frozen=True)
class CachedModel:
    pk: int
    version: int
    priced: PricedModel


_models: dict[str, CachedModel] = {}
_lock = threading.Lock()


def cached_model(model_id: str) -> CachedModel | None:
    """The enabled model with this id (from the cache, else read and cached), or None."""
    cached = _models.get(model_id)
    if cached is not None:
        return cached
    with db.engine.connect() as conn:
        rows = conn.execute(MODEL_SQL, {"model_id": model_id}).all()
    if not rows:
        return None
    pk, version, provider, name, context_length, max_output = rows[0][:6]
    tiers: dict[int, dict[str, int]] = {}
    list_tiers: dict[int, dict[str, int]] = {}
    for row in rows:
        tiers.setdefault(row.tier_threshold_tokens, {})[row.token_class] = row.sell_price
        list_tiers.setdefault(row.tier_threshold_tokens, {})[row.token_class] = row.list_price
    cached = CachedModel(
        pk=pk,
        version=version,
        priced=PricedModel(
            provider=provider,
            model_id=model_id,
            name=name,
            context_length=context_length,
            max_output_tokens=max_output,
            tiers=tiers,
            list_tiers=list_tiers,
        ),
    )
    with _lock:
        _models[model_id] = cached
    return cached


def forget(model_id: str) -> None:
    """Drop a copy the hold statement found out of date."""
    with _lock:
        _models.pop(model_id, None)
