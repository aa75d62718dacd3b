"""The model catalogue: the bundled file, its sync into the database (`flask catalog sync`), and
the admin's edits (enabling, margins, sell prices)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel, ModelPrice
from app.models.catalog import PRICE_CLASSES, PROVIDERS
from app.models.types import utcnow
from app.services.accounts import AccountError
from app.services.audit import clean_reason, record_audit
from app.services.money import MAX_NANOCREDITS, nanos_to_credits
from app.services.pricing import sell_price, usd_per_mtok_to_nanos
from app.services.search import contains

CATALOG_PATH = Path(__file__).resolve().parent.parent / "catalog" / "models.json"
# 1000% on top of the provider's price: beyond that a margin is a typo, not a price.
MARGIN_BPS_MAX = 100_000


class CatalogError(ValueError):
    """An admin edit of the catalogue that cannot be made; `field` names the input at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class CatalogConflict(CatalogError):
    """An edit asking for the state the catalogue is already in (a stale page, a double post)."""


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


# Admin edits. Each flushes and records an audit entry; the request commits. On a CatalogError
# nothing has changed.


def _reason(reason: str) -> str:
    try:
        return clean_reason(reason)
    except AccountError as exc:
        raise CatalogError("reason", exc.errors["reason"]) from None


def _default_margin_bps() -> int:
    return current_app.config["MARGIN_BPS"]


def _price_change(price: ModelPrice, old: int, new: int) -> dict:
    return {"class": price.token_class, "tier": price.tier_threshold_tokens, "old": old, "new": new}


def set_model_enabled(
    model: CatalogModel, enabled: bool, *, actor_id: int | None, reason: str
) -> None:
    """Offer a model (or stop offering it) on /pricing, /v1/models and the proxy, at once.

    Raises CatalogError without a reason, CatalogConflict when it already is in that state.
    """
    reason = _reason(reason)
    if model.enabled == enabled:
        state = "enabled" if enabled else "disabled"
        raise CatalogConflict("enabled", f"{model.model_id} is already {state}.")
    model.enabled = enabled
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.enable" if enabled else "catalog.disable",
        target_account_id=None,
        reason=reason,
        details={"model": model.model_id, "old": not enabled, "new": enabled},
    )


def set_model_margin(
    model: CatalogModel, margin_bps: int | None, *, actor_id: int | None, reason: str
) -> None:
    """Set a model's margin override (None: the global MARGIN_BPS) and reprice, from its list
    prices, every price of it an admin has not edited.

    Raises CatalogError without a reason or for a margin outside 0..MARGIN_BPS_MAX.
    """
    reason = _reason(reason)
    if margin_bps is not None and (
        type(margin_bps) is not int or not 0 <= margin_bps <= MARGIN_BPS_MAX
    ):
        raise CatalogError(
            "margin_bps", f"The margin must be between 0 and {MARGIN_BPS_MAX:,} basis points."
        )
    old_margin = model.margin_bps
    model.margin_bps = margin_bps
    margin = margin_for(model, _default_margin_bps())
    repriced = []
    for price in model.prices:
        if price.admin_edited_at is not None:
            continue
        new_sell = sell_price(price.list_price_nanos_per_mtok, margin)
        if new_sell != price.sell_price_nanos_per_mtok:
            repriced.append(_price_change(price, price.sell_price_nanos_per_mtok, new_sell))
            price.sell_price_nanos_per_mtok = new_sell
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.margin",
        target_account_id=None,
        reason=reason,
        details={
            "model": model.model_id,
            "old": old_margin,
            "new": margin_bps,
            "repriced": repriced,
        },
    )


def set_sell_price(
    price: ModelPrice, sell_nanos_per_mtok: int, *, actor_id: int | None, reason: str
) -> None:
    """Set one sell price by hand; `flask catalog sync` and margin changes then keep it.

    Raises CatalogError without a reason, for a negative or too large price, and for one below
    the list price: OneKey does not sell under cost.
    """
    reason = _reason(reason)
    if type(sell_nanos_per_mtok) is not int:
        raise CatalogError("sell_price", "The sell price must be a whole number of nanocredits.")
    if sell_nanos_per_mtok < 0:
        raise CatalogError("sell_price", "The sell price cannot be negative.")
    if sell_nanos_per_mtok > MAX_NANOCREDITS:
        raise CatalogError("sell_price", "The sell price is too large.")
    if sell_nanos_per_mtok < price.list_price_nanos_per_mtok:
        raise CatalogError(
            "sell_price",
            f"The sell price is below the list price of "
            f"{nanos_to_credits(price.list_price_nanos_per_mtok)} credits per 1M tokens; "
            "OneKey does not sell under cost.",
        )
    old = price.sell_price_nanos_per_mtok
    price.sell_price_nanos_per_mtok = sell_nanos_per_mtok
    price.admin_edited_at = utcnow()
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.sell_price",
        target_account_id=None,
        reason=reason,
        details={"model": price.model.model_id, **_price_change(price, old, sell_nanos_per_mtok)},
    )


def reset_price_to_catalogue(price: ModelPrice, *, actor_id: int | None, reason: str) -> None:
    """Hand a price back to the catalogue: list price × the model's margin, kept up by sync.

    Raises CatalogError without a reason.
    """
    reason = _reason(reason)
    old = price.sell_price_nanos_per_mtok
    new = sell_price(
        price.list_price_nanos_per_mtok, margin_for(price.model, _default_margin_bps())
    )
    price.sell_price_nanos_per_mtok = new
    price.admin_edited_at = None
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.reset_price",
        target_account_id=None,
        reason=reason,
        details={"model": price.model.model_id, **_price_change(price, old, new)},
    )
