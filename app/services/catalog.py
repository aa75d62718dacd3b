"""The model catalogue: the bundled file, its sync into the database (`flask catalog sync`), and
the admin's edits (enabling, margins, sell prices)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import CatalogModel, ModelPrice
from app.models.catalog import MODEL_STATUSES, PRICE_CLASSES, PROVIDERS
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
    # Prices an admin edited whose list price the file changed; the sell price, still at or above
    # the new list price, is kept, and reported.
    kept_admin_prices: list[str] = field(default_factory=list)
    # Prices an admin edited whose list price rose above the sell price: raised to list × margin,
    # marked on the admin page, and reported.
    raised_prices: list[str] = field(default_factory=list)
    # Models the file says their provider retired, disabled by this sync (or added disabled).
    retired_disabled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BundledPrice:
    """One list price of the bundled file: nanocredits per 1M tokens, where and when it was read."""

    nanos_per_mtok: int
    source: str
    as_of: date


def load_catalog(path: Path = CATALOG_PATH) -> list[dict]:
    """The bundled entries, validated; raises ValueError naming the first bad entry.

    Every price needs its source (an https URL) and the date it was read (`as_of`); a deprecated
    model needs its retirement date and a replacement that the file holds as active.
    """
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
            for token_class, price in tier.items():
                _bundled_price(model_id, token_class, price)
        _check_lifecycle(entry)
    statuses = {entry["id"]: entry["status"] for entry in entries}
    for entry in entries:
        replacement = entry.get("replacement")
        if replacement is None:
            continue
        if replacement == entry["id"] or replacement not in statuses:
            raise ValueError(f"{entry['id']}: replacement {replacement!r} is not in the catalogue")
        if entry["status"] == "deprecated" and statuses[replacement] != "active":
            raise ValueError(f"{entry['id']}: replacement {replacement!r} is not active")
        if statuses[replacement] == "retired":
            raise ValueError(f"{entry['id']}: replacement {replacement!r} is retired")
    return entries


def _check_lifecycle(entry: dict) -> None:
    model_id, status = entry["id"], entry.get("status")
    if status not in MODEL_STATUSES:
        raise ValueError(f"{model_id}: status must be one of {', '.join(MODEL_STATUSES)}")
    retires_on = entry.get("retires_on")
    if retires_on is not None:
        _iso_date(model_id, "retires_on", retires_on)
    if status == "deprecated" and (retires_on is None or not entry.get("replacement")):
        raise ValueError(f"{model_id}: a deprecated model needs retires_on and a replacement")
    if status == "active" and retires_on is not None:
        raise ValueError(f"{model_id}: an active model has no retirement date")


def _iso_date(model_id: str, name: str, value) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{model_id}: {name} {value!r} is not a YYYY-MM-DD date") from None


def _bundled_price(model_id: str, token_class: str, price) -> BundledPrice:
    """Raises ValueError for a price without a plain USD figure, an https source or its date."""
    if not isinstance(price, dict):
        raise ValueError(f"{model_id} {token_class}: a price is {{usd, source, as_of}}")
    source = price.get("source")
    if not isinstance(source, str) or not source.startswith("https://"):
        raise ValueError(f"{model_id} {token_class}: the price needs its https source")
    as_of = _iso_date(model_id, f"{token_class} as_of", price.get("as_of"))
    return BundledPrice(usd_per_mtok_to_nanos(price.get("usd")), source, as_of)


def _tiers(entry: dict) -> dict[int, dict]:
    tiers = {0: entry["prices"]}
    if entry.get("long_context"):
        tiers[int(entry["long_context"]["threshold_tokens"])] = entry["long_context"]["prices"]
    return tiers


def margin_for(model: CatalogModel, default_margin_bps: int) -> int:
    return default_margin_bps if model.margin_bps is None else model.margin_bps


def sync_catalog(default_margin_bps: int, path: Path = CATALOG_PATH) -> SyncReport:
    """Load the bundled catalogue: add new models, update lifecycles, list prices and sell prices.

    Idempotent. A model the file says is retired is disabled (never deleted: usage names it) and
    reported; an admin can enable a deprecated one, not a retired one. A model `retire_due_models`
    retired on its date stays retired while the file still calls it deprecated (see
    `_synced_status`), and the sync never enables a model. Models no longer in the file
    are left as they are (an admin disables them). List prices always follow the file (they are
    the provider's); a sell price an admin set is kept while it is at or above the list price.

    When a list price rises above a sell price an admin set, the sync raises that sell price to
    list × margin and marks it for the admin page, rather than refusing the new list price:
    refusing would leave the catalogue claiming a cost the provider no longer charges, and every
    request in the meantime would be sold under cost. The raise keeps "never under cost" at once;
    the mark (and the audit entry) makes the overridden edit impossible to miss.
    """
    report = SyncReport()
    existing = {m.model_id: m for m in db.session.scalars(select(CatalogModel))}
    for entry in load_catalog(path):
        model = existing.get(entry["id"])
        changed = False
        added = model is None
        if added:
            model = CatalogModel(
                model_id=entry["id"], provider=entry["provider"], enabled=True, status="active"
            )
            db.session.add(model)
            report.added.append(entry["id"])
        base_input = _bundled_price(entry["id"], "input", entry["prices"]["input"])
        for attr, value in (
            ("provider", entry["provider"]),
            ("name", entry["name"]),
            ("context_length", int(entry["context_length"])),
            ("max_output_tokens", int(entry["max_output_tokens"])),
            ("price_source", base_input.source),
            ("price_date", base_input.as_of.isoformat()),
            ("status", _synced_status(model, entry)),
            ("retires_on", _retires_on(entry)),
            ("replacement_model_id", entry.get("replacement")),
        ):
            if getattr(model, attr) != value:
                setattr(model, attr, value)
                changed = True
        if model.status == "retired" and model.enabled:
            model.enabled = False
            changed = True
            report.retired_disabled.append(entry["id"])
            if not added:
                record_audit(
                    actor_id=None,
                    action="catalog.sync_retired",
                    target_account_id=None,
                    reason="retired by its provider (bundled catalogue)",
                    details={"model": entry["id"], "replacement": model.replacement_model_id},
                )
        if _sync_prices(model, entry, default_margin_bps, report):
            changed = True
        if changed:
            model.synced_at = utcnow()
            if not added:
                report.updated.append(entry["id"])
        elif not added:
            report.unchanged.append(entry["id"])
    db.session.flush()
    return report


def _synced_status(model: CatalogModel, entry: dict) -> str:
    """The status the sync gives a model: the file's, except that a model the database has as
    retired stays retired when the file calls it deprecated with the same or an earlier date.

    That is a model `retire_due_models` retired once its `retires_on` passed: the file, written
    before the date, still says deprecated, and the provider no longer serves it. Only a file that
    moves the retirement later (the provider postponed it) makes it deprecated again; it stays
    disabled until an admin enables it. No date is read here.
    """
    wanted = entry["status"]
    if model.status != "retired" or wanted != "deprecated":
        return wanted
    retires_on = _retires_on(entry)
    if model.retires_on is not None and retires_on is not None and retires_on > model.retires_on:
        return wanted
    return "retired"


def retire_due_models(today: date) -> list[str]:
    """Retire every deprecated model whose `retires_on` is `today` or earlier (a UTC date): status
    retired, disabled, one "catalog.retired_on_date" audit entry each. Returns their ids, sorted.

    Idempotent, and safe against a concurrent run: each model is retired by a statement that
    changes it only while it is still deprecated, and only the run that changed it audits it.
    The change moves the model's version (migration 0003), so every gateway process refuses its
    cached copy on the next request. The cron scheduler runs this (app.tasks.maintenance), and so
    does `flask catalog sync` after the sync; flushed, not committed.
    """
    if isinstance(today, datetime) or not isinstance(today, date):
        raise TypeError("retire_due_models takes a date (the UTC date), not a datetime")
    due = db.session.execute(
        select(
            CatalogModel.id,
            CatalogModel.model_id,
            CatalogModel.retires_on,
            CatalogModel.replacement_model_id,
            CatalogModel.enabled,
        )
        .where(CatalogModel.status == "deprecated", CatalogModel.retires_on <= today)
        .order_by(CatalogModel.model_id)
    ).all()
    retired = []
    for pk, model_id, retires_on, replacement, was_enabled in due:
        changed = db.session.execute(
            update(CatalogModel)
            .where(CatalogModel.id == pk, CatalogModel.status == "deprecated")
            .values(status="retired", enabled=False)
            .execution_options(synchronize_session="fetch")
        ).rowcount
        if changed != 1:
            continue
        instead = f"; use {replacement} instead" if replacement else ""
        record_audit(
            actor_id=None,
            action="catalog.retired_on_date",
            target_account_id=None,
            reason=f"retired by its provider on {retires_on.isoformat()}{instead}",
            details={
                "model": model_id,
                "retires_on": retires_on.isoformat(),
                "replacement": replacement,
                "was_enabled": was_enabled,
                "today": today.isoformat(),
            },
        )
        retired.append(model_id)
    db.session.flush()
    return sorted(retired)


def _retires_on(entry: dict) -> date | None:
    value = entry.get("retires_on")
    return None if value is None else date.fromisoformat(value)


def _sync_prices(
    model: CatalogModel, entry: dict, default_margin_bps: int, report: SyncReport
) -> bool:
    """Bring one model's prices to the file's; True when anything changed."""
    changed = False
    margin = margin_for(model, default_margin_bps)
    current = {(p.tier_threshold_tokens, p.token_class): p for p in model.prices}
    wanted = {
        (threshold, token_class): _bundled_price(entry["id"], token_class, price)
        for threshold, classes in _tiers(entry).items()
        for token_class, price in classes.items()
    }
    for (threshold, token_class), bundled in wanted.items():
        list_price = bundled.nanos_per_mtok
        price = current.get((threshold, token_class))
        label = f"{entry['id']} {token_class} tier>{threshold}"
        if price is None:
            model.prices.append(
                ModelPrice(
                    tier_threshold_tokens=threshold,
                    token_class=token_class,
                    list_price_nanos_per_mtok=list_price,
                    sell_price_nanos_per_mtok=sell_price(list_price, margin),
                    source=bundled.source,
                    as_of=bundled.as_of,
                )
            )
            changed = True
            continue
        if (price.source, price.as_of) != (bundled.source, bundled.as_of):
            price.source, price.as_of = bundled.source, bundled.as_of
            changed = True
        old_list = price.list_price_nanos_per_mtok
        if old_list != list_price:
            price.list_price_nanos_per_mtok = list_price
            changed = True
        if price.admin_edited_at is not None:
            if price.sell_price_nanos_per_mtok < list_price:
                _raise_edited_price(price, old_list, sell_price(list_price, margin))
                report.raised_prices.append(
                    f"{label}: sell {nanos_to_credits(price.raised_from_sell_nanos_per_mtok)} "
                    f"-> {nanos_to_credits(price.sell_price_nanos_per_mtok)} "
                    f"(list {nanos_to_credits(old_list)} -> {nanos_to_credits(list_price)})"
                )
                changed = True
            elif old_list != list_price:
                report.kept_admin_prices.append(label)
            continue
        new_sell = sell_price(list_price, margin)
        if price.sell_price_nanos_per_mtok != new_sell:
            price.sell_price_nanos_per_mtok = new_sell
            changed = True
    for key, price in current.items():
        if key not in wanted and price.admin_edited_at is None:
            model.prices.remove(price)
            changed = True
    return changed


def _raise_edited_price(price: ModelPrice, old_list: int, new_sell: int) -> None:
    """An admin's sell price the list price rose above: back to the catalogue price, marked."""
    old_sell = price.sell_price_nanos_per_mtok
    price.raised_at = utcnow()
    price.raised_from_sell_nanos_per_mtok = old_sell
    price.raised_from_list_nanos_per_mtok = old_list
    price.sell_price_nanos_per_mtok = new_sell
    price.admin_edited_at = None
    record_audit(
        actor_id=None,
        action="catalog.sync_raised_price",
        target_account_id=None,
        reason="the list price rose above the sell price an admin had set",
        details={
            "model": price.model.model_id,
            **_price_change(price, old_sell, new_sell),
            "old_list": old_list,
            "new_list": price.list_price_nanos_per_mtok,
        },
    )


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

    Raises CatalogError without a reason or to enable a model its provider retired (requests to it
    fail, or are answered and billed by another model), CatalogConflict when it already is in that
    state.
    """
    reason = _reason(reason)
    if model.enabled == enabled:
        state = "enabled" if enabled else "disabled"
        raise CatalogConflict("enabled", f"{model.model_id} is already {state}.")
    if enabled and model.status == "retired":
        instead = (
            f"; offer {model.replacement_model_id} instead" if model.replacement_model_id else ""
        )
        raise CatalogError(
            "enabled", f"{model.model_id} is retired by its provider and cannot be sold{instead}."
        )
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
    _clear_raise(price)
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
    _clear_raise(price)
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.reset_price",
        target_account_id=None,
        reason=reason,
        details={"model": price.model.model_id, **_price_change(price, old, new)},
    )


def acknowledge_raised_price(price: ModelPrice, *, actor_id: int | None, reason: str) -> None:
    """Accept the sell price a sync raised (the mark goes; the price stays list × margin).

    Raises CatalogError without a reason, CatalogConflict when the price carries no such mark.
    """
    reason = _reason(reason)
    if price.raised_at is None:
        raise CatalogConflict("raised", "This price was not raised by a sync.")
    details = {
        "model": price.model.model_id,
        "class": price.token_class,
        "tier": price.tier_threshold_tokens,
        "raised_at": price.raised_at.isoformat(),
        "old_sell": price.raised_from_sell_nanos_per_mtok,
        "sell": price.sell_price_nanos_per_mtok,
    }
    _clear_raise(price)
    db.session.flush()
    record_audit(
        actor_id=actor_id,
        action="catalog.acknowledge_raise",
        target_account_id=None,
        reason=reason,
        details=details,
    )


def _clear_raise(price: ModelPrice) -> None:
    price.raised_at = None
    price.raised_from_sell_nanos_per_mtok = None
    price.raised_from_list_nanos_per_mtok = None
