"""`sync_catalog`: the bundled models and prices reach the database exactly, idempotently; and the
catalogue lifecycle (issue 11 item 7): retired models are never sold, deprecated ones are sold with
their retirement date, and a risen list price never leaves a sell price below cost."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import AuditLogEntry, CatalogModel, ModelPrice
from app.models.types import utcnow
from app.services.catalog import (
    CATALOG_PATH,
    CatalogError,
    load_catalog,
    price_table,
    set_model_enabled,
    sync_catalog,
)
from app.services.pricing import tier_for_prompt

# Every model the tests, the fakes and the bench name, sold or not: usage rows name them.
REQUIRED_MODELS = (
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
    "gpt-6.1-sol",
    "gpt-6.1-terra",
    "gpt-6-luna",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3.5-flash-lite",
    "gemini-3.1-pro-preview",
    "grok-4",
    "grok-4-fast-reasoning",
    "grok-4-fast-non-reasoning",
    "grok-3-mini",
    "grok-4.3",
)
# The notes already called these retired (issue 11 item 7); the research of 2026-12-04 adds
# claude-sonnet-4-5, gemini-2.5-pro and gemini-2.5-flash.
RETIRED = {
    "o4-mini",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "grok-4",
    "grok-4-fast-reasoning",
    "grok-4-fast-non-reasoning",
}
CATALOG_READ_ON = date(2026, 12, 4)
DEFAULT_MARGIN_BPS = 1000


def bundled() -> dict[str, dict]:
    return {entry["id"]: entry for entry in json.loads(CATALOG_PATH.read_text())["models"]}


def usd_to_nanos(price: str) -> int:
    """Independent conversion of a bundled USD price to nanocredits per million tokens."""
    value = Decimal(price) * 10**9
    assert value == value.to_integral_value(), price
    return int(value)


def times_margin(list_price: int, margin_bps: int) -> int:
    exact = Decimal(list_price) * (10_000 + margin_bps) / 10_000
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP))


def snapshot() -> dict:
    """Every catalogue row and column, read with plain SQL."""
    models = db.session.execute(text("SELECT * FROM catalog_models ORDER BY id")).mappings().all()
    prices = db.session.execute(text("SELECT * FROM model_prices ORDER BY id")).mappings().all()
    return {"models": [dict(m) for m in models], "prices": [dict(p) for p in prices]}


def price_row(model_id: str, token_class: str, tier: int = 0) -> ModelPrice:
    return db.session.scalars(
        select(ModelPrice)
        .join(CatalogModel)
        .where(
            CatalogModel.model_id == model_id,
            ModelPrice.token_class == token_class,
            ModelPrice.tier_threshold_tokens == tier,
        )
    ).one()


def model_row(model_id: str) -> CatalogModel:
    return db.session.scalars(select(CatalogModel).where(CatalogModel.model_id == model_id)).one()


@pytest.fixture
def synced(app_ctx):
    report = sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    return report


def test_default_margin_is_ten_percent(app):
    assert app.config["MARGIN_BPS"] == DEFAULT_MARGIN_BPS


def test_first_sync_adds_every_bundled_model(synced):
    assert sorted(synced.added) == sorted(bundled())
    assert synced.updated == []
    assert synced.unchanged == []
    assert synced.kept_admin_prices == []
    assert synced.raised_prices == []
    assert sorted(synced.retired_disabled) == sorted(RETIRED)


def test_sync_is_idempotent(synced):
    before = snapshot()
    report = sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    assert report.added == []
    assert report.updated == []
    assert report.kept_admin_prices == []
    assert report.raised_prices == []
    assert report.retired_disabled == []
    assert sorted(report.unchanged) == sorted(bundled())
    # Same rows, same ids, same prices, same synced_at: nothing was written.
    assert snapshot() == before
    # And a third time, from a fresh session.
    db.session.remove()
    sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    assert snapshot() == before


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_every_required_model_is_present_with_source_and_date(synced, model_id):
    model = model_row(model_id)
    assert model.enabled is (model_id not in RETIRED)
    assert (model.status == "retired") is (model_id in RETIRED)
    assert model.provider in ("openai", "anthropic", "google", "xai")
    assert model.price_source and re.match(r"^https://", model.price_source)
    assert model.price_date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", model.price_date)
    for price in model.prices:
        assert price.source.startswith("https://"), (model_id, price.token_class)
        assert price.as_of <= CATALOG_READ_ON, (model_id, price.token_class)
    assert model.context_length > 0
    assert 0 < model.max_output_tokens <= model.context_length
    base = price_table(model)[0]
    assert base["input"] > 0
    assert base["output"] > 0


def test_list_prices_are_the_bundled_prices_exactly(synced):
    for model_id, entry in bundled().items():
        model = model_row(model_id)
        stored = {(p.tier_threshold_tokens, p.token_class): p for p in model.prices}
        wanted = {(0, c): (usd_to_nanos(v["usd"]), v["source"]) for c, v in entry["prices"].items()}
        if entry.get("long_context"):
            threshold = int(entry["long_context"]["threshold_tokens"])
            wanted |= {
                (threshold, c): (usd_to_nanos(v["usd"]), v["source"])
                for c, v in entry["long_context"]["prices"].items()
            }
        stored_prices = {k: (p.list_price_nanos_per_mtok, p.source) for k, p in stored.items()}
        assert stored_prices == wanted, model_id


def test_sell_price_is_list_times_1_1_rounded_half_up(synced):
    prices = db.session.scalars(select(ModelPrice)).all()
    assert prices
    for price in prices:
        assert price.sell_price_nanos_per_mtok == times_margin(
            price.list_price_nanos_per_mtok, DEFAULT_MARGIN_BPS
        )
    # Spot checks by hand: $1.25 -> 1.375 credits; $0.075 -> 0.0825; $0.275 -> 0.3025.
    assert price_row("gpt-5", "input").sell_price_nanos_per_mtok == 1_375_000_000
    assert price_row("gpt-4o-mini", "cache_read").sell_price_nanos_per_mtok == 82_500_000
    assert price_row("o4-mini", "cache_read").sell_price_nanos_per_mtok == 302_500_000
    assert price_row("claude-opus-4-1", "cache_write_5m").sell_price_nanos_per_mtok == (
        20_625_000_000
    )


def test_admin_edited_price_survives_sync_and_is_reported(synced):
    """The list price follows the file (it is the provider's); the admin's sell price, still above
    it, is kept, and the difference reported."""
    edited = price_row("gpt-5", "input")
    edited.list_price_nanos_per_mtok = 1_000_000_000  # what an older file listed
    edited.sell_price_nanos_per_mtok = 1_334_567_891
    edited.admin_edited_at = utcnow()
    db.session.commit()
    edited_id = edited.id

    report = sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    db.session.expire_all()

    kept = db.session.get(ModelPrice, edited_id)
    assert kept.list_price_nanos_per_mtok == 1_250_000_000
    assert kept.sell_price_nanos_per_mtok == 1_334_567_891
    assert kept.admin_edited_at is not None and kept.raised_at is None
    assert report.kept_admin_prices == ["gpt-5 input tier>0"]
    assert report.raised_prices == []
    # The model's other prices are still the bundled ones.
    assert price_row("gpt-5", "output").sell_price_nanos_per_mtok == 11_000_000_000


def test_admin_edited_sell_price_survives_a_margin_change(synced):
    edited = price_row("gpt-5", "output")
    edited.sell_price_nanos_per_mtok = 10_500_000_000
    edited.admin_edited_at = utcnow()
    model_row("gpt-5").margin_bps = 3000
    db.session.commit()

    report = sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    db.session.expire_all()

    assert price_row("gpt-5", "output").sell_price_nanos_per_mtok == 10_500_000_000
    assert price_row("gpt-5", "input").sell_price_nanos_per_mtok == 1_625_000_000
    assert "gpt-5" in report.updated


def test_per_model_margin_recomputes_sell_prices_on_next_sync(synced):
    before = snapshot()
    model_row("gpt-4o").margin_bps = 2500
    model_row("o3").margin_bps = 0
    db.session.commit()

    report = sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    db.session.expire_all()

    assert sorted(report.updated) == ["gpt-4o", "o3"]
    for price in model_row("gpt-4o").prices:
        assert price.sell_price_nanos_per_mtok == times_margin(
            price.list_price_nanos_per_mtok, 2500
        )
    for price in model_row("o3").prices:
        assert price.sell_price_nanos_per_mtok == price.list_price_nanos_per_mtok
    assert price_row("gpt-4o", "input").sell_price_nanos_per_mtok == 3_125_000_000
    # Every other model is untouched.
    changed_pks = {model_row("gpt-4o").id, model_row("o3").id}
    after = snapshot()
    assert [p for p in after["prices"] if p["model_pk"] not in changed_pks] == [
        p for p in before["prices"] if p["model_pk"] not in changed_pks
    ]
    # Removing the override goes back to the default margin.
    model_row("o3").margin_bps = None
    db.session.commit()
    sync_catalog(DEFAULT_MARGIN_BPS)
    db.session.commit()
    assert price_row("o3", "input").sell_price_nanos_per_mtok == 2_200_000_000


def test_a_new_default_margin_recomputes_every_unedited_price(synced):
    report = sync_catalog(1500)
    db.session.commit()
    assert sorted(report.updated) == sorted(bundled())
    for price in db.session.scalars(select(ModelPrice)):
        assert price.sell_price_nanos_per_mtok == times_margin(
            price.list_price_nanos_per_mtok, 1500
        )


def test_long_context_tier_is_loaded_for_gemini_2_5_pro(synced):
    table = price_table(model_row("gemini-2.5-pro"))
    assert sorted(table) == [0, 200_000]
    assert table[0] == {
        "input": 1_375_000_000,
        "cache_read": 137_500_000,
        "output": 11_000_000_000,
    }
    assert table[200_000] == {
        "input": 2_750_000_000,
        "cache_read": 275_000_000,
        "output": 16_500_000_000,
    }
    thresholds = list(table)
    assert tier_for_prompt(thresholds, 200_000) == 0
    assert tier_for_prompt(thresholds, 200_001) == 200_000


def test_models_without_a_long_context_tier_have_only_the_base_tier(synced):
    for model_id, entry in bundled().items():
        tiers = sorted(price_table(model_row(model_id)))
        if entry.get("long_context"):
            assert tiers == [0, int(entry["long_context"]["threshold_tokens"])], model_id
        else:
            assert tiers == [0], model_id


def _write_catalog(tmp_path, entries) -> object:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"catalog_version": "test", "models": entries}))
    return path


def _prices(as_of="2026-01-01", **usd) -> dict:
    return {
        token_class: {"usd": value, "source": "https://example.com/pricing", "as_of": as_of}
        for token_class, value in usd.items()
    }


def _entry(model_id="m-1", **overrides) -> dict:
    entry = {
        "provider": "openai",
        "id": model_id,
        "name": model_id.upper(),
        "status": "active",
        "context_length": 1000,
        "max_output_tokens": 100,
        "prices": _prices(input="1.00", cache_read="0.10", output="2.00"),
    }
    entry.update(overrides)
    return entry


def test_changed_bundled_price_updates_the_row_in_place(app_ctx, tmp_path):
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry()]))
    db.session.commit()
    ids = {(p.tier_threshold_tokens, p.token_class): p.id for p in model_row("m-1").prices}

    new = _entry(prices=_prices("2026-02-01", input="1.50", output="2.00"))
    report = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [new]))
    db.session.commit()
    db.session.expire_all()

    assert report.updated == ["m-1"]
    model = model_row("m-1")
    assert model.price_date == "2026-02-01"
    assert {p.as_of for p in model.prices} == {date(2026, 2, 1)}
    table = price_table(model)
    assert table == {0: {"input": 1_650_000_000, "output": 2_200_000_000}}
    # The surviving rows kept their ids; the dropped class is gone.
    assert {(p.tier_threshold_tokens, p.token_class): p.id for p in model.prices} == {
        k: v for k, v in ids.items() if k != (0, "cache_read")
    }


def test_admin_edited_price_is_not_deleted_when_the_file_drops_it(app_ctx, tmp_path):
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry()]))
    db.session.commit()
    price_row("m-1", "cache_read").admin_edited_at = utcnow()
    db.session.commit()

    new = _entry(prices=_prices(input="1.00", output="2.00"))
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [new]))
    db.session.commit()
    assert price_row("m-1", "cache_read").sell_price_nanos_per_mtok == 110_000_000


def test_model_dropped_from_the_file_is_left_as_it_is(app_ctx, tmp_path):
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry("a"), _entry("b")]))
    db.session.commit()
    before = snapshot()
    report = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry("a")]))
    db.session.commit()
    assert report.unchanged == ["a"]
    assert snapshot() == before


@pytest.mark.parametrize(
    "entries",
    [
        [_entry("dup"), _entry("dup")],
        [_entry(provider="mistral")],
        [_entry(prices=_prices(input="1.00"))],
        [_entry(prices=_prices(input="1.00", output="2.00", web_search="10"))],
        [_entry(id="")],
        # Issue 11 item 7: every price has its source and date; lifecycles are complete.
        [_entry(prices={"input": "1.00", "output": "2.00"})],
        [_entry(prices={**_prices(input="1.00"), "output": {"usd": "2", "as_of": "2026-01-01"}})],
        [_entry(prices={**_prices(input="1.00"), "output": {"usd": "2", "source": "http://x.io"}})],
        [_entry(prices=_prices("yesterday", input="1.00", output="2.00"))],
        [_entry(status="sunset")],
        [_entry(status="deprecated", replacement="m-2"), _entry("m-2")],
        [_entry(status="deprecated", retires_on="2027-01-01")],
        [_entry(status="deprecated", retires_on="2027-01-01", replacement="nowhere")],
        [
            _entry(status="deprecated", retires_on="2027-01-01", replacement="m-2"),
            _entry("m-2", status="deprecated", retires_on="2027-01-01", replacement="m-3"),
            _entry("m-3"),
        ],
        [_entry(status="retired", replacement="m-2"), _entry("m-2", status="retired")],
        [_entry(retires_on="2027-01-01")],
    ],
)
def test_bad_catalogue_is_refused_and_writes_nothing(app_ctx, tmp_path, entries):
    path = _write_catalog(tmp_path, entries)
    with pytest.raises(ValueError):
        load_catalog(path)
    with pytest.raises(ValueError):
        sync_catalog(DEFAULT_MARGIN_BPS, path)
    db.session.rollback()
    assert snapshot() == {"models": [], "prices": []}


@pytest.mark.parametrize("price", ["1e3", "0.0000000001", "-1", "abc"])
def test_unrepresentable_bundled_price_is_refused(app_ctx, tmp_path, price):
    path = _write_catalog(tmp_path, [_entry(prices=_prices(input=price, output="1"))])
    with pytest.raises(ValueError):
        sync_catalog(DEFAULT_MARGIN_BPS, path)
    db.session.rollback()
    assert snapshot() == {"models": [], "prices": []}


# --- the catalogue lifecycle (issue 11 item 7) ----------------------------------------------------


def test_item7_bundled_file_is_valid_every_price_sourced_and_dated():
    entries = load_catalog()
    by_id = {entry["id"]: entry for entry in entries}
    assert set(REQUIRED_MODELS) <= set(by_id)
    read_on = date.fromisoformat(json.loads(CATALOG_PATH.read_text())["catalog_version"])
    for entry in entries:
        tiers = [entry["prices"]] + (
            [entry["long_context"]["prices"]] if entry.get("long_context") else []
        )
        for tier in tiers:
            for token_class, price in tier.items():
                where = (entry["id"], token_class)
                assert re.match(r"^https://\S+$", price["source"]), where
                assert date.fromisoformat(price["as_of"]) <= read_on, where
                assert usd_to_nanos(price["usd"]) >= 0, where
        assert entry["status"] in ("active", "deprecated", "retired"), entry["id"]
        if entry["status"] == "deprecated":
            assert date.fromisoformat(entry["retires_on"]), entry["id"]
            assert by_id[entry["replacement"]]["status"] == "active", entry["id"]
        if entry.get("replacement"):
            assert by_id[entry["replacement"]]["status"] != "retired", entry["id"]
        if entry["status"] == "active":
            assert "retires_on" not in entry, entry["id"]
    # The notes' retired models are marked so, each with a replacement that is sold.
    assert {e["id"] for e in entries if e["status"] == "retired"} == RETIRED
    assert all(by_id[model_id].get("replacement") for model_id in RETIRED)


def test_item7_retired_model_is_disabled_not_deleted_and_reported(app_ctx, tmp_path):
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry("old"), _entry("new")]))
    db.session.commit()
    assert model_row("old").enabled
    price_ids = sorted(p.id for p in model_row("old").prices)

    retired = _entry("old", status="retired", retires_on="2026-06-01", replacement="new")
    report = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [retired, _entry("new")]))
    db.session.commit()
    db.session.expire_all()

    assert report.retired_disabled == ["old"]
    assert report.updated == ["old"] and report.unchanged == ["new"]
    model = model_row("old")
    assert (model.enabled, model.status, model.retires_on, model.replacement_model_id) == (
        False,
        "retired",
        date(2026, 6, 1),
        "new",
    )
    # Kept with its prices: usage rows name it, and its last prices explain their cost.
    assert sorted(p.id for p in model.prices) == price_ids
    assert [(e.action, e.actor_id, e.details["model"]) for e in audit()] == [
        ("catalog.sync_retired", None, "old")
    ]
    # An admin cannot sell it again, and a second sync reports nothing new.
    with pytest.raises(CatalogError, match=r"retired by its provider.*offer new instead"):
        set_model_enabled(model, True, actor_id=None, reason="customers ask for it")
    db.session.rollback()
    again = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [retired, _entry("new")]))
    assert (again.retired_disabled, again.unchanged) == ([], ["old", "new"])


def test_item7_bundled_retired_models_are_never_sold(synced, client):
    listed = {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    page = client.get("/pricing").get_data(as_text=True)
    for model_id in RETIRED:
        assert not model_row(model_id).enabled, model_id
        assert model_id not in listed, model_id
        assert f"<code>{model_id}</code>" not in page, model_id
    assert sorted(synced.retired_disabled) == sorted(RETIRED)


def test_item7_deprecated_model_stays_sold_with_its_retirement_date(synced, client):
    entry = bundled()["gpt-5"]
    assert (entry["status"], entry["retires_on"], entry["replacement"]) == (
        "deprecated",
        "2026-12-11",
        "gpt-6.1-sol",
    )
    model = model_row("gpt-5")
    assert model.enabled and model.status == "deprecated"
    assert model.retires_on == date(2026, 12, 11)
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["data"]}
    assert (
        listed["gpt-5"]["status"],
        listed["gpt-5"]["shutdown_date"],
        listed["gpt-5"]["replacement"],
    ) == ("deprecated", "2026-12-11", "gpt-6.1-sol")
    assert (listed["gpt-6.1-sol"]["status"], listed["gpt-6.1-sol"]["shutdown_date"]) == (
        "active",
        None,
    )
    row = client.get("/pricing?q=gpt-5-mini").get_data(as_text=True)
    assert "Retires 2026-12-11; use gpt-6.1-terra</small>" in row
    assert "Retires" not in client.get("/pricing?q=gpt-6.1-terra").get_data(as_text=True)


def _edited(model_id: str, token_class: str, sell: int) -> int:
    price = price_row(model_id, token_class)
    price.sell_price_nanos_per_mtok = sell
    price.admin_edited_at = utcnow()
    db.session.commit()
    return price.id


def audit() -> list[AuditLogEntry]:
    return list(db.session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)))


def test_item7_list_price_raised_above_edited_sell_price_raises_it_and_flags_it(app_ctx, tmp_path):
    sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [_entry()]))
    db.session.commit()
    edited_id = _edited("m-1", "input", 1_050_000_000)  # a promotion: 5% over the 1.00 list
    output_id = _edited("m-1", "output", 2_500_000_000)  # well over the 2.00 list

    risen = _entry(prices=_prices("2026-03-01", input="1.20", cache_read="0.10", output="2.40"))
    report = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [risen]))
    db.session.commit()
    db.session.expire_all()

    raised = db.session.get(ModelPrice, edited_id)
    # Never below cost: list × margin, handed back to the catalogue, marked with what it was.
    assert (raised.list_price_nanos_per_mtok, raised.sell_price_nanos_per_mtok) == (
        1_200_000_000,
        1_320_000_000,
    )
    assert raised.admin_edited_at is None and raised.raised_at is not None
    assert (raised.raised_from_sell_nanos_per_mtok, raised.raised_from_list_nanos_per_mtok) == (
        1_050_000_000,
        1_000_000_000,
    )
    assert report.raised_prices == ["m-1 input tier>0: sell 1.05 -> 1.32 (list 1 -> 1.2)"]
    # The output edit still covers the new list price: kept, and reported as before.
    kept = db.session.get(ModelPrice, output_id)
    assert (kept.list_price_nanos_per_mtok, kept.sell_price_nanos_per_mtok) == (
        2_400_000_000,
        2_500_000_000,
    )
    assert kept.admin_edited_at is not None and kept.raised_at is None
    assert report.kept_admin_prices == ["m-1 output tier>0"]
    (entry,) = audit()
    assert (entry.action, entry.actor_id) == ("catalog.sync_raised_price", None)
    assert entry.details == {
        "model": "m-1",
        "class": "input",
        "tier": 0,
        "old": 1_050_000_000,
        "new": 1_320_000_000,
        "old_list": 1_000_000_000,
        "new_list": 1_200_000_000,
    }
    # No price of the model is below its list price, and a second sync changes nothing.
    for price in model_row("m-1").prices:
        assert price.sell_price_nanos_per_mtok >= price.list_price_nanos_per_mtok
    before = snapshot()
    again = sync_catalog(DEFAULT_MARGIN_BPS, _write_catalog(tmp_path, [risen]))
    db.session.commit()
    assert (again.raised_prices, again.unchanged) == ([], ["m-1"])
    assert snapshot() == before


def test_item7_sync_never_leaves_any_bundled_sell_price_below_its_list_price(synced, tmp_path):
    """Every admin edit at exactly the list price, then every bundled list price up by a tenth."""
    for price in db.session.scalars(select(ModelPrice)):
        price.sell_price_nanos_per_mtok = price.list_price_nanos_per_mtok
        price.admin_edited_at = utcnow()
    db.session.commit()
    entries = load_catalog()
    for entry in entries:
        for tier in [entry["prices"]] + (
            [entry["long_context"]["prices"]] if entry.get("long_context") else []
        ):
            for price in tier.values():
                price["usd"] = str(Decimal(price["usd"]) * Decimal("1.1"))
    path = tmp_path / "risen.json"
    path.write_text(json.dumps({"catalog_version": "test", "models": entries}))
    report = sync_catalog(DEFAULT_MARGIN_BPS, path)
    db.session.commit()
    prices = db.session.scalars(select(ModelPrice)).all()
    assert len(report.raised_prices) == sum(p.list_price_nanos_per_mtok > 0 for p in prices)
    for price in prices:
        assert price.sell_price_nanos_per_mtok >= price.list_price_nanos_per_mtok
