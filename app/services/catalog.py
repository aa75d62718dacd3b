"""The bundled model catalogue and its sync into the database (`flask catalog sync`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel, ModelPrice
from app.models.catalog import PRICE_CLASSES, PROVIDERS
from app.models.types import utcnow
from app.services.pricing import sell_price, usd_per_mtok_to_nanos
from app.services.search import contains

CATALOG_PATH = Path(__file__).resolve().parent.parent / "catalog" / "models.json"


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Prices an admin edited that differ from the bundled file; kept, and reported.
    kept_admin_prices: list[str] = field(default_factory=list)


def load_catalog(path: Path = CATALOG_PATH) -> list[dict]:
    """The bundled entries, validated; raises ValueError naming the first bad entry."""
    data = json.loads(path.read_text())
    entries = data["models"]
    seen: set[str] = set()
    for entry in entries:
        model_id = entry.get("id")
        if not model_id or model_id in seen:
            raise ValueError(f"catalogue entry without a unique id: {model_id!r}")
        seen.add(model_id)
        if entry.get("provider") not in PROVIDERS:
            raise ValueError(f"{model_id}: unknown provider {entry.get('provider')!r}")
        for tier in _tiers(entry).values():
            unknown = set(tier) - set(PRICE_CLASSES)
            if unknown or not {"input", "output"} <= set(tier):
                raise ValueError(f"{model_id}: bad price classes {sorted(tier)}")
    return entries


def _tiers(entry: dict) -> dict[int, dict[str, str]]:
    tiers = {0: entry["prices"]}
    if entry.get("long_context"):
        tiers[int(entry["long_context"]["threshold_tokens"])] = entry["long_context"]["prices"]
    return tiers


def margin_for(model: CatalogModel, default_margin_bps: int) -> int:
    return default_margin_bps if model.margin_bps is None else model.margin_bps


def sync_catalog(default_margin_bps: int, path: Path = CATALOG_PATH) -> SyncReport:
    """Load the bundled catalogue: add new models, update list prices and sell prices.

    Idempotent. A price an admin edited is never overwritten; a difference is reported instead.
    Models no longer in the file are left as they are (an admin disables them).
    """
    report = SyncReport()
    existing = {m.model_id: m for m in db.session.scalars(select(CatalogModel))}
    for entry in load_catalog(path):
        model = existing.get(entry["id"])
        changed = False
        if model is None:
            model = CatalogModel(model_id=entry["id"], provider=entry["provider"], enabled=True)
            db.session.add(model)
            report.added.append(entry["id"])
        for attr, value in (
            ("provider", entry["provider"]),
            ("name", entry["name"]),
            ("context_length", int(entry["context_length"])),
            ("max_output_tokens", int(entry["max_output_tokens"])),
            ("price_source", entry.get("source")),
            ("price_date", entry.get("price_date")),
        ):
            if getattr(model, attr) != value:
                setattr(model, attr, value)
                changed = True
        margin = margin_for(model, default_margin_bps)
        current = {(p.tier_threshold_tokens, p.token_class): p for p in model.prices}
        wanted = {
            (threshold, token_class): usd_per_mtok_to_nanos(price)
            for threshold, classes in _tiers(entry).items()
            for token_class, price in classes.items()
        }
        for (threshold, token_class), list_price in wanted.items():
            price = current.get((threshold, token_class))
            if price is None:
                model.prices.append(
                    ModelPrice(
                        tier_threshold_tokens=threshold,
                        token_class=token_class,
                        list_price_nanos_per_mtok=list_price,
                        sell_price_nanos_per_mtok=sell_price(list_price, margin),
                    )
                )
                changed = True
            elif price.admin_edited_at is not None:
                if price.list_price_nanos_per_mtok != list_price:
                    report.kept_admin_prices.append(f"{entry['id']} {token_class} tier>{threshold}")
            else:
                new_sell = sell_price(list_price, margin)
                if (price.list_price_nanos_per_mtok, price.sell_price_nanos_per_mtok) != (
                    list_price,
                    new_sell,
                ):
                    price.list_price_nanos_per_mtok = list_price
                    price.sell_price_nanos_per_mtok = new_sell
                    changed = True
        for key, price in current.items():
            if key not in wanted and price.admin_edited_at is None:
                model.prices.remove(price)
                changed = True
        if changed:
            model.synced_at = utcnow()
            if entry["id"] not in report.added:
                report.updated.append(entry["id"])
        elif entry["id"] not in report.added:
            report.unchanged.append(entry["id"])
    db.session.flush()
    return report


def enabled_models(provider: str | None = None, search: str | None = None) -> list[CatalogModel]:
    query = select(CatalogModel).where(CatalogModel.enabled.is_(True))
    if provider:
        query = query.where(CatalogModel.provider == provider)
    if search:
        search = search.strip()
        query = query.where(
            contains(CatalogModel.model_id, search) | contains(CatalogModel.name, search)
        )
    return list(db.session.scalars(query.order_by(CatalogModel.provider, CatalogModel.model_id)))


def price_table(model: CatalogModel) -> dict[int, dict[str, int]]:
    """Sell prices by tier threshold, then token class (nanocredits per 1M tokens)."""
    table: dict[int, dict[str, int]] = {}
    for price in model.prices:
        table.setdefault(price.tier_threshold_tokens, {})[price.token_class] = (
            price.sell_price_nanos_per_mtok
        )
    return table
