"""Issue 11 item 7 in Chromium: the admin catalogue of the bundled file is compact (one row per
model, measured at 1280 px wide), a model's forms open in its row by HTMX, an edit made there swaps
the row in place, and closing it gives the row back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel, ModelPrice
from app.services.catalog import load_catalog
from tests.helpers import sign_in_page

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

# The page was 16,000 px tall with every model's forms laid out; well under this is the goal.
MAX_PAGE_HEIGHT_PX = 3000


def test_item7_admin_catalogue_is_compact_and_edits_in_a_fragment(
    app, catalog, make_account, new_context
):
    make_account("admin@example.com", admin=True)
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in_page(page, "admin@example.com")
    page.goto("/admin/catalog")
    rows = page.locator("tr.catalog-row")
    expect(rows).to_have_count(len(load_catalog()))

    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"admin catalogue: {len(load_catalog())} models, {height} px tall at 1280 px wide")
    assert height < MAX_PAGE_HEIGHT_PX
    row_heights = page.eval_on_selector_all(
        "tr.catalog-row", "rows => rows.map(r => r.getBoundingClientRect().height)"
    )
    assert max(row_heights) < 60, row_heights  # one line each, not a section per model

    with app.app_context():
        pk = db.session.scalar(
            select(CatalogModel.id).where(CatalogModel.model_id == "gpt-4o-mini")
        )
        input_id = db.session.scalar(
            select(ModelPrice.id).where(
                ModelPrice.model_pk == pk,
                ModelPrice.token_class == "input",
                ModelPrice.tier_threshold_tokens == 0,
            )
        )
    model = page.locator(f"#catalog-model-{pk}")
    model.get_by_role("button", name="Edit gpt-4o-mini").click()
    editor = page.locator(f"#catalog-model-edit-{pk}")
    expect(editor).to_be_visible()
    assert page.url.endswith("/admin/catalog")  # swapped in place, not a page load

    editor.locator(f"#sell-price-{input_id}").fill("0.2")
    editor.locator(f"#sell-price-reason-{input_id}").fill("launch price")
    editor.locator(f"#catalog-price-{input_id}").get_by_role("button", name="Set").click()
    expect(page.locator(f"#catalog-model-{pk} .notice")).to_contain_text("the sell price is set")
    expect(page.locator(f"#catalog-model-{pk} tr.catalog-row")).to_contain_text("1 edited")
    expect(page.locator(f"#catalog-model-{pk} tr.catalog-row")).to_contain_text("0.20")

    page.locator(f"#catalog-model-{pk}").get_by_role("button", name="Close").click()
    expect(page.locator(f"#catalog-model-edit-{pk}")).to_have_count(0)
    with app.app_context():
        price = db.session.get(ModelPrice, input_id)
        assert (price.sell_price_nanos_per_mtok, price.admin_edited_at is not None) == (
            200_000_000,
            True,
        )
