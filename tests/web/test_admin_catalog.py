"""Admin catalogue: enabling models, margins and sell prices, each audited with a reason, never
selling under cost, and kept by `flask catalog sync` once an admin set them; one compact row per
model, its forms loaded into the row on demand, lifecycle and price flags shown (issue 11 item 7)."""

from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLogEntry, CatalogModel, ModelPrice
from app.models.types import utcnow
from app.proxy.errors import ProxyError
from app.proxy.gateway import resolve_model
from app.proxy.views import per_token_price
from app.services.catalog import sync_catalog
from app.services.money import nanos_to_credits
from tests.helpers import Browser

PAGE = "/admin/catalog"
# gpt-4o-mini lists input at 0.15, cached input at 0.075 and output at 0.60 credits per 1M tokens.
MODEL = "gpt-4o-mini"
INPUT_LIST = 150_000_000
TIERED = "gemini-3.1-pro-preview"  # prompts above 200,000 tokens bill at a second tier
HX = {"HX-Request": "true"}


def times_margin(list_price: int, margin_bps: int) -> int:
    """List × (1 + margin), rounded half-up: the rule written out independently."""
    return (2 * list_price * (10_000 + margin_bps) + 10_000) // 20_000


def model_pk(app, model_id: str = MODEL) -> int:
    with app.app_context():
        return db.session.scalar(select(CatalogModel.id).where(CatalogModel.model_id == model_id))


def price_id(app, model_id: str = MODEL, billed_as: str = "input", tier: int = 0) -> int:
    with app.app_context():
        return db.session.scalar(
            select(ModelPrice.id)
            .join(CatalogModel)
            .where(
                CatalogModel.model_id == model_id,
                ModelPrice.token_class == billed_as,
                ModelPrice.tier_threshold_tokens == tier,
            )
        )


def model_state(app, model_id: str = MODEL) -> dict:
    """Everything an edit may change: enabled, margin, and (list, sell, edited) per price."""
    with app.app_context():
        model = db.session.scalars(
            select(CatalogModel).where(CatalogModel.model_id == model_id)
        ).one()
        return {
            "enabled": model.enabled,
            "margin_bps": model.margin_bps,
            "prices": {
                (p.tier_threshold_tokens, p.token_class): (
                    p.list_price_nanos_per_mtok,
                    p.sell_price_nanos_per_mtok,
                    p.admin_edited_at is not None,
                )
                for p in model.prices
            },
        }


def audit_entries(app) -> list[tuple[str, int | None, str | None, dict | None]]:
    with app.app_context():
        return [
            (e.action, e.target_account_id, e.reason, e.details)
            for e in db.session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id))
        ]


def post(admin: Browser, action: str, data: dict, **kwargs):
    return admin.post_form(PAGE, data, action=action, **kwargs)


def margin(app) -> int:
    return app.config["MARGIN_BPS"]


def admin_paths(app) -> list[str]:
    pk, pid = model_pk(app), price_id(app)
    return [
        PAGE,
        f"/admin/catalog/models/{pk}/enable",
        f"/admin/catalog/models/{pk}/disable",
        f"/admin/catalog/models/{pk}/margin",
        f"/admin/catalog/prices/{pid}/sell-price",
        f"/admin/catalog/prices/{pid}/reset",
    ]


# Access.


def test_catalogue_urls_are_404_to_anonymous_and_customers(app, catalog, make_account, client):
    make_account("customer@example.com")
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    before = model_state(app)
    data = {"reason": "x", "margin_bps": "0", "sell_price": "0.15"}
    for path in admin_paths(app):
        for browser_client in (client, customer.client):
            assert browser_client.get(path).status_code == 404, path
            assert browser_client.post(path, data=data).status_code == 404, path
    assert model_state(app) == before
    assert audit_entries(app) == []


def test_edits_need_the_csrf_token_and_a_known_model_or_price(app, catalog, admin):
    pk = model_pk(app)
    assert (
        admin.client.post(f"/admin/catalog/models/{pk}/disable", data={"reason": "x"}).status_code
        == 400
    )
    for action in (
        "/admin/catalog/models/999999/disable",
        "/admin/catalog/models/999999/margin",
        "/admin/catalog/prices/999999/sell-price",
        "/admin/catalog/prices/999999/reset",
    ):
        assert post(admin, action, {"reason": "x", "sell_price": "1"}).status_code == 404
    assert model_state(app)["enabled"] is True
    assert audit_entries(app) == []


# The page.


def model_rows(html: str, pk: int) -> str:
    """The <tbody> of one model on the page or in a fragment."""
    rows = html[html.index(f'<tbody id="catalog-model-{pk}"') :]
    return rows[: rows.index("</tbody>") + len("</tbody>")]


def edit_fragment(admin: Browser, pk: int) -> str:
    response = admin.client.get(f"/admin/catalog/models/{pk}", headers=HX)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_item7_catalogue_page_is_one_compact_row_per_model(app, catalog, admin):
    with app.app_context():
        model_ids = db.session.scalars(select(CatalogModel.model_id)).all()
    page = admin.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for model_id in model_ids:
        assert f">{model_id}</code>" in html, model_id
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate ids"
    # One row per model and no forms: those load on demand.
    assert html.count('<tr class="catalog-row') == len(model_ids)
    assert "<form" not in html[html.index("<table") :]
    assert "catalog-edit" not in html
    rows = model_rows(html, model_pk(app))
    assert rows.count("<tr") == 1
    assert "OpenAI" in rows and "enabled" in rows and "deprecated" in rows and "2027-01-14" in rows
    assert "0.165" in rows and "0.66" in rows  # the sell prices, input and output
    assert f'href="/admin/catalog?edit={model_pk(app)}#catalog-model-{model_pk(app)}"' in rows
    assert f'hx-get="/admin/catalog/models/{model_pk(app)}"' in rows
    retired = model_rows(html, model_pk(app, "grok-4"))
    assert (
        "retired" in retired
        and "disabled" in retired
        and 'title="Replacement: grok-4.3"' in retired
    )
    # The admin sub-navigation has the page, marked current here, and every admin page links it.
    assert 'href="/admin/catalog" aria-current="page"' in html
    assert 'href="/admin/catalog"' in admin.get("/admin/purchases").get_data(as_text=True)


def test_item7_edit_forms_load_into_the_row_as_a_fragment(app, catalog, admin):
    pk = model_pk(app)
    fragment = edit_fragment(admin, pk)
    assert fragment.lstrip().startswith(f'<tbody id="catalog-model-{pk}"')
    assert "<html" not in fragment and "<h1>" not in fragment
    assert '<tr class="catalog-edit">' in fragment
    section = fragment[fragment.index(f'<section id="catalog-model-edit-{pk}"') :]
    assert f"default {margin(app)} bps" in section
    # List and sell price per 1M tokens, in credits; the input field holds the exact sell price.
    assert "0.15" in section and "0.165" in section and "0.60" in section and "0.66" in section
    assert f'value="{nanos_to_credits(times_margin(INPUT_LIST, margin(app)))}"' in section
    assert "edited" not in section
    for action in ("disable", "margin"):
        assert f"/admin/catalog/models/{pk}/{action}" in section
    assert f"/admin/catalog/prices/{price_id(app)}/sell-price" in section
    # Each price says where and when its list price was read.
    assert 'href="https://' in section and "2026-11-26" in section
    tiered = edit_fragment(admin, model_pk(app, TIERED))
    assert "Above 200,000" in tiered
    # Close swaps the row back; without JavaScript, Edit opens the page at the model.
    closed = admin.client.get(f"/admin/catalog/models/{pk}/row", headers=HX)
    assert closed.status_code == 200 and "<form" not in closed.get_data(as_text=True)
    plain = admin.client.get(f"/admin/catalog/models/{pk}")
    assert plain.status_code == 302
    assert plain.headers["Location"].endswith(f"/admin/catalog?edit={pk}#catalog-model-{pk}")
    opened = admin.get(f"{PAGE}?edit={pk}").get_data(as_text=True)
    assert "<h1>Catalogue</h1>" in opened
    assert f'<section id="catalog-model-edit-{pk}"' in opened
    assert opened.count('<tr class="catalog-edit">') == 1
    assert admin.client.get("/admin/catalog/models/999999", headers=HX).status_code == 404


def test_item7_flags_are_visible_on_the_row(app, catalog, admin):
    pk = model_pk(app)
    post(
        admin,
        f"/admin/catalog/prices/{price_id(app)}/sell-price",
        {"sell_price": "0.2", "reason": "launch price"},
    )
    with app.app_context():
        output = db.session.get(ModelPrice, price_id(app, billed_as="output"))
        output.raised_at = utcnow()
        output.raised_from_sell_nanos_per_mtok = 500_000_000
        output.raised_from_list_nanos_per_mtok = 450_000_000
        db.session.commit()
    rows = model_rows(admin.get(PAGE).get_data(as_text=True), pk)
    assert '<span class="flag flag-warning"' in rows and "1 raised by sync" in rows
    assert "1 edited" in rows
    assert "1 needs attention" in admin.get(PAGE).get_data(as_text=True)
    fragment = edit_fragment(admin, pk)
    assert "raised by sync" in fragment
    assert (
        "the list price rose from 0.45" in fragment and "above the sell price of 0.50" in fragment
    )
    assert f"/admin/catalog/prices/{price_id(app, billed_as='output')}/acknowledge" in fragment


# Enabling and disabling.


def test_disabling_a_model_needs_a_reason_and_hides_it_everywhere_at_once(
    app, catalog, admin, client
):
    pk = model_pk(app)
    action = f"/admin/catalog/models/{pk}/disable"
    assert f"<code>{MODEL}</code>" in client.get("/pricing").get_data(as_text=True)
    assert MODEL in {m["id"] for m in client.get("/v1/models").get_json()["data"]}

    for reason in ("", "   "):
        refused = post(admin, action, {"reason": reason})
        assert refused.status_code == 400
        assert "Give a reason." in refused.get_data(as_text=True)
    assert model_state(app)["enabled"] is True
    assert audit_entries(app) == []

    done = post(admin, action, {"reason": "provider deprecates it"}, headers=HX)
    assert done.status_code == 200
    fragment = done.get_data(as_text=True)
    assert fragment.lstrip().startswith(f'<tbody id="catalog-model-{pk}"')
    assert f"{MODEL} is disabled." in fragment
    assert f"/admin/catalog/models/{pk}/enable" in fragment
    assert model_state(app)["enabled"] is False
    assert audit_entries(app) == [
        (
            "catalog.disable",
            None,
            "provider deprecates it",
            {"model": MODEL, "old": True, "new": False},
        )
    ]
    with app.app_context():
        assert db.session.scalar(select(AuditLogEntry.actor_id)) is not None

    # Gone from the public price list, the model list and the proxy, from the next request on.
    assert f"<code>{MODEL}</code>" not in client.get("/pricing").get_data(as_text=True)
    assert f"<code>{MODEL}</code>" not in client.get(f"/pricing?q={MODEL}").get_data(as_text=True)
    assert MODEL not in {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    with app.app_context(), pytest.raises(ProxyError) as refused_upstream:
        resolve_model(MODEL)
    assert refused_upstream.value.condition == "model_not_found"
    # Still on the admin page, so that it can be enabled again.
    assert f">{MODEL}</code>" in admin.get(PAGE).get_data(as_text=True)

    again = post(admin, action, {"reason": "twice"}, headers=HX)
    assert again.status_code == 409
    assert f"{MODEL} is already disabled." in again.get_data(as_text=True)
    assert len(audit_entries(app)) == 1

    back = post(admin, f"/admin/catalog/models/{pk}/enable", {"reason": "replacement late"})
    assert back.status_code == 302
    assert back.headers["Location"].endswith(f"/admin/catalog?edit={pk}#catalog-model-{pk}")
    assert f"{MODEL} is enabled." in admin.get(back.headers["Location"]).get_data(as_text=True)
    assert model_state(app)["enabled"] is True
    assert audit_entries(app)[-1] == (
        "catalog.enable",
        None,
        "replacement late",
        {"model": MODEL, "old": False, "new": True},
    )
    assert f"<code>{MODEL}</code>" in client.get("/pricing").get_data(as_text=True)
    assert MODEL in {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    with app.app_context():
        assert resolve_model(MODEL).model_id == MODEL


# Margins.


def test_a_margin_reprices_the_unedited_prices_and_keeps_the_edited_one(app, catalog, admin):
    pk = model_pk(app)
    edited = post(
        admin,
        f"/admin/catalog/prices/{price_id(app)}/sell-price",
        {"sell_price": "0.2", "reason": "launch price"},
    )
    assert edited.status_code == 302
    before = model_state(app)["prices"]

    done = post(
        admin,
        f"/admin/catalog/models/{pk}/margin",
        {"margin_bps": "2500", "reason": "support costs"},
        headers=HX,
    )
    assert done.status_code == 200
    assert "2500 bps (25%)" in done.get_data(as_text=True)
    state = model_state(app)
    assert state["margin_bps"] == 2500
    for key, (list_price, sell, is_edited) in state["prices"].items():
        if key == (0, "input"):
            assert (sell, is_edited) == (200_000_000, True)
        else:
            assert (sell, is_edited) == (times_margin(list_price, 2500), False), key
    action, target, reason, details = audit_entries(app)[-1]
    assert (action, target, reason) == ("catalog.margin", None, "support costs")
    assert details["model"] == MODEL and details["old"] is None and details["new"] == 2500
    assert {(r["tier"], r["class"]): (r["old"], r["new"]) for r in details["repriced"]} == {
        key: (before[key][1], sell)
        for key, (_, sell, is_edited) in state["prices"].items()
        if not is_edited
    }

    # Empty goes back to the global default, without JavaScript too.
    back = post(admin, f"/admin/catalog/models/{pk}/margin", {"margin_bps": "", "reason": "undo"})
    assert back.status_code == 302
    assert "its unedited prices follow it" in admin.get(back.headers["Location"]).get_data(
        as_text=True
    )
    state = model_state(app)
    assert state["margin_bps"] is None
    assert state["prices"][(0, "output")][1] == times_margin(600_000_000, margin(app))
    assert state["prices"][(0, "input")][1] == 200_000_000
    assert audit_entries(app)[-1][3]["old"] == 2500 and audit_entries(app)[-1][3]["new"] is None


@pytest.mark.parametrize("margin_bps", ["0", "100000"])
def test_a_margin_may_be_anything_from_zero_to_100000_bps(app, catalog, admin, margin_bps):
    done = post(
        admin,
        f"/admin/catalog/models/{model_pk(app)}/margin",
        {"margin_bps": margin_bps, "reason": "bounds"},
    )
    assert done.status_code == 302
    state = model_state(app)
    assert state["margin_bps"] == int(margin_bps)
    assert state["prices"][(0, "input")][1] == times_margin(INPUT_LIST, int(margin_bps))


@pytest.mark.parametrize(
    ("margin_bps", "message"),
    [
        ("-1", "between 0 and 100,000 basis points"),
        ("100001", "between 0 and 100,000 basis points"),
        ("abc", "Enter a whole number of basis points"),
        ("12.5", "Enter a whole number of basis points"),
        ("10%", "Enter a whole number of basis points"),
        ("1e3", "Enter a whole number of basis points"),
    ],
)
def test_a_margin_out_of_range_or_not_a_whole_number_is_refused(
    app, catalog, admin, margin_bps, message
):
    before = model_state(app)
    action = f"/admin/catalog/models/{model_pk(app)}/margin"
    for headers in ({}, HX):
        refused = post(admin, action, {"margin_bps": margin_bps, "reason": "r"}, headers=headers)
        assert refused.status_code == 400
        html = refused.get_data(as_text=True)
        assert message in html
        assert f'value="{margin_bps}"' in html  # what was typed stays in the field
    assert model_state(app) == before
    assert audit_entries(app) == []


def test_a_margin_needs_a_reason(app, catalog, admin):
    before = model_state(app)
    refused = post(admin, f"/admin/catalog/models/{model_pk(app)}/margin", {"margin_bps": "2000"})
    assert refused.status_code == 400
    assert "Give a reason." in refused.get_data(as_text=True)
    assert model_state(app) == before
    assert audit_entries(app) == []


# Sell prices.


def test_setting_a_sell_price_marks_it_edited_and_is_audited(app, catalog, admin, client):
    pid = price_id(app)
    pk = model_pk(app)
    done = post(
        admin,
        f"/admin/catalog/prices/{pid}/sell-price",
        {"sell_price": " 0.199999999 ", "reason": "promotion"},
        headers=HX,
    )
    assert done.status_code == 200
    fragment = done.get_data(as_text=True)
    assert fragment.lstrip().startswith(f'<tbody id="catalog-model-{pk}"')
    assert "the sell price is set" in fragment
    assert "0.199999999" in fragment and ">edited</span>" in fragment
    assert f"Reset to {nanos_to_credits(times_margin(INPUT_LIST, margin(app)))}" in fragment
    state = model_state(app)
    assert state["prices"][(0, "input")] == (INPUT_LIST, 199_999_999, True)
    assert audit_entries(app) == [
        (
            "catalog.sell_price",
            None,
            "promotion",
            {
                "model": MODEL,
                "class": "input",
                "tier": 0,
                "old": times_margin(INPUT_LIST, margin(app)),
                "new": 199_999_999,
            },
        )
    ]
    # The proxy and /v1/models charge and show the new price from the next request on.
    with app.app_context():
        assert resolve_model(MODEL).tiers[0]["input"] == 199_999_999
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["data"]}
    assert listed[MODEL]["pricing"]["prompt"] == per_token_price(199_999_999)

    # Exactly the list price is allowed: at cost, never under it.
    at_cost = post(
        admin,
        f"/admin/catalog/prices/{pid}/sell-price",
        {"sell_price": "0.15", "reason": "at cost"},
    )
    assert at_cost.status_code == 302
    assert model_state(app)["prices"][(0, "input")] == (INPUT_LIST, INPUT_LIST, True)


def test_a_sell_price_of_a_long_context_tier(app, catalog, admin):
    pid = price_id(app, TIERED, "output", 200_000)
    done = post(
        admin, f"/admin/catalog/prices/{pid}/sell-price", {"sell_price": "30", "reason": "long"}
    )
    assert done.status_code == 302
    state = model_state(app, TIERED)["prices"]
    assert state[(200_000, "output")] == (18_000_000_000, 30_000_000_000, True)
    assert state[(0, "output")][2] is False
    details = audit_entries(app)[-1][3]
    assert (details["model"], details["class"], details["tier"]) == (TIERED, "output", 200_000)
    assert "above 200,000 prompt tokens" in admin.get(done.headers["Location"]).get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("sell_price", "message"),
    [
        ("-1", "cannot be negative"),
        ("-0.000000001", "cannot be negative"),
        ("0.149999999", "below the list price of 0.15 credits per 1M tokens"),
        ("0", "below the list price"),
        ("abc", "is not a plain decimal number"),
        ("1e3", "is not a plain decimal number"),
        ("1,5", "is not a plain decimal number"),
        ("0.2000000001", "has more than 9 decimals"),
        ("99999999999", "is too large"),
        ("", "Enter a price in credits per 1M tokens."),
    ],
)
def test_a_bad_sell_price_is_refused_and_nothing_changes(app, catalog, admin, sell_price, message):
    before = model_state(app)
    action = f"/admin/catalog/prices/{price_id(app)}/sell-price"
    for headers in ({}, HX):
        refused = post(admin, action, {"sell_price": sell_price, "reason": "r"}, headers=headers)
        assert refused.status_code == 400
        html = refused.get_data(as_text=True)
        assert message in html
        assert 'aria-invalid="true"' in html
    assert model_state(app) == before
    assert audit_entries(app) == []


def test_a_sell_price_needs_a_reason(app, catalog, admin):
    before = model_state(app)
    refused = post(admin, f"/admin/catalog/prices/{price_id(app)}/sell-price", {"sell_price": "1"})
    assert refused.status_code == 400
    assert "Give a reason." in refused.get_data(as_text=True)
    too_long = post(
        admin,
        f"/admin/catalog/prices/{price_id(app)}/sell-price",
        {"sell_price": "1", "reason": "x" * 501},
    )
    assert too_long.status_code == 400
    assert model_state(app) == before
    assert audit_entries(app) == []


# Sync and reset.


def test_an_edited_price_survives_sync_while_the_others_follow_the_margin(app, catalog, admin):
    pk = model_pk(app)
    post(
        admin,
        f"/admin/catalog/prices/{price_id(app)}/sell-price",
        {"sell_price": "0.5", "reason": "r"},
    )
    post(admin, f"/admin/catalog/models/{pk}/margin", {"margin_bps": "3000", "reason": "r"})
    with app.app_context():
        sync_catalog(app.config["MARGIN_BPS"])
        db.session.commit()
    state = model_state(app)
    assert state["margin_bps"] == 3000
    assert state["prices"][(0, "input")] == (INPUT_LIST, 500_000_000, True)
    assert state["prices"][(0, "cache_read")] == (75_000_000, times_margin(75_000_000, 3000), False)
    assert state["prices"][(0, "output")] == (600_000_000, times_margin(600_000_000, 3000), False)


def test_reset_returns_a_price_to_list_times_margin_and_sync_then_keeps_it_up(app, catalog, admin):
    pk, pid = model_pk(app), price_id(app)
    post(admin, f"/admin/catalog/models/{pk}/margin", {"margin_bps": "2000", "reason": "r"})
    post(admin, f"/admin/catalog/prices/{pid}/sell-price", {"sell_price": "0.9", "reason": "r"})
    assert f"/admin/catalog/prices/{pid}/reset" in edit_fragment(admin, pk)

    refused = post(admin, f"/admin/catalog/prices/{pid}/reset", {"reason": ""}, headers=HX)
    assert refused.status_code == 400
    assert "Give a reason." in refused.get_data(as_text=True)
    assert model_state(app)["prices"][(0, "input")] == (INPUT_LIST, 900_000_000, True)
    audited = len(audit_entries(app))

    done = post(
        admin, f"/admin/catalog/prices/{pid}/reset", {"reason": "promotion over"}, headers=HX
    )
    assert done.status_code == 200
    assert "back to the catalogue price" in done.get_data(as_text=True)
    assert model_state(app)["prices"][(0, "input")] == (
        INPUT_LIST,
        times_margin(INPUT_LIST, 2000),
        False,
    )
    assert len(audit_entries(app)) == audited + 1
    assert audit_entries(app)[-1] == (
        "catalog.reset_price",
        None,
        "promotion over",
        {
            "model": MODEL,
            "class": "input",
            "tier": 0,
            "old": 900_000_000,
            "new": times_margin(INPUT_LIST, 2000),
        },
    )
    assert f"/admin/catalog/prices/{pid}/reset" not in edit_fragment(admin, pk)
    # Unedited again: the next margin change reprices it.
    post(admin, f"/admin/catalog/models/{pk}/margin", {"margin_bps": "500", "reason": "r"})
    assert model_state(app)["prices"][(0, "input")][1] == times_margin(INPUT_LIST, 500)


def test_without_javascript_a_refused_edit_shows_the_whole_page_with_the_error(app, catalog, admin):
    pid = price_id(app)
    refused = post(
        admin, f"/admin/catalog/prices/{pid}/sell-price", {"sell_price": "0.1", "reason": "cheap"}
    )
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "<h1>Catalogue</h1>" in html
    assert f'id="sell-price-{pid}" name="sell_price" value="0.1"' in html
    assert f'id="sell-price-reason-{pid}" name="reason" value="cheap"' in html
    assert "OneKey does not sell under cost" in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditLogEntry)) == 0


# The lifecycle (issue 11 item 7).


def test_item7_a_retired_model_cannot_be_enabled(app, catalog, admin, client):
    pk = model_pk(app, "grok-4")
    assert f"/admin/catalog/models/{pk}/enable" not in edit_fragment(admin, pk)
    for headers in ({}, HX):
        refused = post(
            admin, f"/admin/catalog/models/{pk}/enable", {"reason": "asked"}, headers=headers
        )
        assert refused.status_code == 400
        html = refused.get_data(as_text=True)
        assert (
            "grok-4 is retired by its provider and cannot be sold; offer grok-4.3 instead." in html
        )
    assert model_state(app, "grok-4")["enabled"] is False
    assert "grok-4" not in {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    assert audit_entries(app) == []


def raise_by_sync(app, billed_as: str = "output") -> int:
    """Mark a price the way a sync does when the list price passed the admin's sell price."""
    pid = price_id(app, billed_as=billed_as)
    with app.app_context():
        price = db.session.get(ModelPrice, pid)
        price.raised_at = utcnow()
        price.raised_from_sell_nanos_per_mtok = 500_000_000
        price.raised_from_list_nanos_per_mtok = 450_000_000
        db.session.commit()
    return pid


def raised(app, pid: int) -> bool:
    with app.app_context():
        return db.session.get(ModelPrice, pid).raised_at is not None


def test_item7_a_raised_price_is_acknowledged_with_a_reason_and_audited(app, catalog, admin):
    pid = raise_by_sync(app)
    before = model_state(app)
    action = f"/admin/catalog/prices/{pid}/acknowledge"
    refused = post(admin, action, {"reason": " "}, headers=HX)
    assert refused.status_code == 400 and "Give a reason." in refused.get_data(as_text=True)
    assert raised(app, pid)

    done = post(admin, action, {"reason": "the provider's new price"}, headers=HX)
    assert done.status_code == 200
    fragment = done.get_data(as_text=True)
    assert "the raised price is acknowledged" in fragment and "raised by sync" not in fragment
    assert not raised(app, pid)
    assert model_state(app) == before  # the price itself stays list × margin
    ((act, target, reason, details),) = audit_entries(app)
    assert (act, target, reason) == ("catalog.acknowledge_raise", None, "the provider's new price")
    assert (details["model"], details["class"], details["old_sell"]) == (
        MODEL,
        "output",
        500_000_000,
    )
    again = post(admin, action, {"reason": "twice"}, headers=HX)
    assert again.status_code == 409
    assert "This price was not raised by a sync." in again.get_data(as_text=True)


def test_item7_setting_or_resetting_a_raised_price_clears_its_mark(app, catalog, admin):
    pid = raise_by_sync(app)
    post(admin, f"/admin/catalog/prices/{pid}/sell-price", {"sell_price": "0.7", "reason": "r"})
    assert not raised(app, pid)
    raise_by_sync(app)
    post(admin, f"/admin/catalog/prices/{pid}/reset", {"reason": "r"})
    assert not raised(app, pid)


def test_item7_a_deprecated_model_past_its_retirement_date_is_flagged(app, catalog, admin):
    pk = model_pk(app)
    rows = model_rows(admin.get(PAGE).get_data(as_text=True), pk)
    assert "retirement date passed" not in rows and "until 2027-01-14" in rows
    with app.app_context():
        db.session.get(CatalogModel, pk).retires_on = date(2026, 1, 1)
        db.session.commit()
    rows = model_rows(admin.get(PAGE).get_data(as_text=True), pk)
    assert "retirement date passed" in rows and 'class="flag flag-warning"' in rows
