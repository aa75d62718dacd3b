"""Issue 10, item 11: a page per model at /models/<id>. Every enabled model's page shows its limits,
its input kinds and every price class and tier exactly as the catalogue holds them, and an
example that runs as pasted; unknown and disabled models are a 404; pricing rows link to the pages."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel
from app.public.docs import INPUT_KINDS, PRICE_CLASS_LABELS, PROVIDER_PREFIXES
from app.services.catalog import load_catalog, price_table, set_sell_price
from app.services.money import NANOS_PER_CREDIT
from tests.proxy.conftest import make_funded_key
from tests.web.examples import (
    FAKE_NAMES,
    live_server_with_fakes,
    page_examples,
    rows_by,
    run_examples,
    tables_of,
    text_of,
)

BUNDLED = {entry["id"]: entry for entry in load_catalog()}

WRITE_LABELS = {
    "anthropic": ("Cache write, 5 min", "Cache write, 1 h"),
    "openai": ("Cache write, 30 min", "Cache write, 12 h"),
}


@pytest.fixture(scope="module")
def models_server(app):
    with live_server_with_fakes(app) as server:
        yield server


def enabled_models(app) -> list[tuple[str, str, dict[int, dict[str, int]], int, int, str]]:
    """(id, provider, sell prices by tier and class, context, max output, name) per model."""
    with app.app_context():
        models = db.session.scalars(
            select(CatalogModel).where(CatalogModel.enabled.is_(True)).order_by(CatalogModel.id)
        ).all()
        return [
            (m.model_id, m.provider, price_table(m), m.context_length, m.max_output_tokens, m.name)
            for m in models
        ]


def credits_cell_to_nanos(cell: str) -> int:
    return int(Decimal(cell.removesuffix(" (as input)").replace(",", "")) * NANOS_PER_CREDIT)


def shown_prices(page: str) -> tuple[list[int], dict[str, list[int | None]]]:
    """(tier thresholds of the columns, {token class: nanocredits per 1M tokens per column})."""
    header = re.search(r'<table class="model-prices" id="model-prices">.*?</thead>', page, re.S)
    thresholds = [
        int(t) for t in re.findall(r'<th scope="col" class="num" data-tier="(\d+)"', header[0])
    ]
    rows = rows_by(page, "model-prices", "data-class")
    return thresholds, {
        token_class: [credits_cell_to_nanos(cell) for cell in cells[1:]]
        for token_class, cells in rows.items()
    }


def facts(page: str) -> dict[str, str]:
    return {
        name: text_of(value).strip()
        for name, value in re.findall(r'<dd data-fact="([a-z_]+)">(.*?)</dd>', page, re.S)
    }


def test_every_enabled_model_page_shows_its_prices_exactly(app, client, catalog):
    models = enabled_models(app)
    assert len(models) == sum(entry["status"] != "retired" for entry in BUNDLED.values())
    for model_id, provider, tiers, context, max_output, name in models:
        response = client.get(f"/models/{model_id}")
        assert response.status_code == 200, model_id
        page = response.get_data(as_text=True)
        assert f"<h1>{name}</h1>" in page
        ids = re.findall(r' id="([^"]+)"', page)
        assert len(ids) == len(set(ids)), (model_id, "an id used twice")
        thresholds, prices = shown_prices(page)
        assert thresholds == sorted(tiers)
        billed = {c for classes in tiers.values() for c in classes}
        assert set(prices) == billed, model_id
        for token_class, shown in prices.items():
            # A tier without a price for the class bills it at that tier's input price.
            expected = [tiers[t].get(token_class, tiers[t]["input"]) for t in thresholds]
            assert shown == expected, (model_id, token_class)
        row_labels = {
            attrs["data-class"]: cells[0]
            for attrs, cells in tables_of(page)["model-prices"]
            if attrs
        }
        # Cache writes are named by the provider's lifetimes for them.
        writes = WRITE_LABELS.get(provider, ("Cache write", "Cache write, long"))
        names = {**PRICE_CLASS_LABELS, "cache_write_5m": writes[0], "cache_write_1h": writes[1]}
        assert row_labels == {c: names[c] for c in billed}, model_id
        shown_facts = facts(page)
        assert shown_facts["context_length"] == f"{context:,} tokens"
        assert shown_facts["max_output_tokens"] == f"{max_output:,} tokens"
        assert shown_facts["model_id"] == f"{model_id} or {PROVIDER_PREFIXES[provider]}{model_id}"
        kinds = [INPUT_KINDS[k] for k in INPUT_KINDS if k in BUNDLED[model_id]["input_modalities"]]
        assert shown_facts["input"] == ", ".join(kinds)
        if len(thresholds) > 1:
            assert f"Prompts above {thresholds[1]:,} tokens" in page


def test_long_context_tiers_of_the_catalogue_are_on_the_model_page(client, catalog):
    # Gemini 3.1 Pro preview: $2 / $4 input and $12 / $18 output above 200k, with the 10% margin.
    page = client.get("/models/gemini-3.1-pro-preview").get_data(as_text=True)
    thresholds, prices = shown_prices(page)
    assert thresholds == [0, 200_000]
    assert prices["input"] == [2_200_000_000, 4_400_000_000]
    assert prices["output"] == [13_200_000_000, 19_800_000_000]
    assert "cache_write_5m" not in prices


def test_model_page_shows_an_admin_edited_price(app, client, catalog):
    with app.app_context():
        model = db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == "gpt-4.1"))
        output = next(p for p in model.prices if p.token_class == "output")
        set_sell_price(output, 9_123_456_789, actor_id=None, reason="test")
        db.session.commit()
    _, prices = shown_prices(client.get("/models/gpt-4.1").get_data(as_text=True))
    assert prices["output"] == [9_123_456_789]


def test_unknown_and_disabled_models_are_a_404(app, client, catalog):
    with app.app_context():
        model = db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == "o3"))
        model.enabled = False
        db.session.commit()
    for path in ("/models/o3", "/models/no-such-model", "/models/openai/o3",
                 "/models/anthropic/gpt-4o", "/models/", "/models/gpt-4o/extra"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.content_type
    assert "OneKey offers no such model." in client.get("/models/no-such-model").get_data(
        as_text=True
    )
    # A model the catalogue holds but does not sell says so, and names its replacement.
    disabled = client.get("/models/o3").get_data(as_text=True)
    assert "is not available" in disabled and "requests naming it are refused" in disabled
    assert 'href="/models/gpt-6.1-sol"' in disabled
    retired = client.get("/models/gemini-2.5-flash").get_data(as_text=True)
    assert "was retired by its provider" in retired
    assert 'href="/models/gemini-3.5-flash-lite"' in retired


def test_a_prefixed_model_id_redirects_to_its_page(client, catalog):
    response = client.get("/models/x-ai/grok-4.3")
    assert response.status_code == 301
    assert response.headers["Location"] == "/models/grok-4.3"
    assert client.get("/models/google/gemini-3.5-flash-lite").headers["Location"] == (
        "/models/gemini-3.5-flash-lite"
    )


def test_pricing_rows_link_to_the_model_pages(app, client, catalog):
    page = client.get("/pricing").get_data(as_text=True)
    links = re.findall(r'<th scope="row" class="model"><a href="(/models/[^"]+)">', page)
    assert links == [
        f"/models/{m[0]}" for m in sorted(enabled_models(app), key=lambda m: (m[1], m[0]))
    ]
    for link in links:
        assert client.get(link).status_code == 200
    fragment = client.get("/pricing?provider=google", headers={"HX-Request": "true"})
    assert 'href="/models/gemini-3.1-pro-preview"' in fragment.get_data(as_text=True)
    # The pricing link is the current page's section on a model page.
    assert 'aria-current="page">Pricing</a>' in client.get(links[0]).get_data(as_text=True)


def test_every_bundled_model_declares_what_it_reads():
    for model_id, entry in BUNDLED.items():
        kinds = entry["input_modalities"]
        assert kinds and "text" in kinds and set(kinds) <= set(INPUT_KINDS), model_id
        assert len(kinds) == len(set(kinds)), model_id


def test_every_model_page_example_runs_as_pasted(app, models_server, catalog, tmp_path):
    key, _, _ = make_funded_key(app, "50")
    models = enabled_models(app)
    examples = {}
    for model_id, *_ in models:
        page = requests.get(f"{models_server.url}/models/{model_id}", timeout=10).text
        found = page_examples(page)
        assert set(found) == {"example-env", "example-model-sdk", "example-model-curl"}
        examples[model_id] = found
    # One run for every model's examples: the export line once, then each model's two.
    merged = {"example-env": examples[models[0][0]]["example-env"]}
    for model_id, found in examples.items():
        for example_id in ("example-model-sdk", "example-model-curl"):
            merged[f"{model_id} {example_id}"] = found[example_id]
    models_server.fakes.reset()
    outcomes = run_examples(merged, key, tmp_path)
    for model_id, provider, *_ in models:
        sdk = outcomes[f"{model_id} example-model-sdk"]
        curl = outcomes[f"{model_id} example-model-curl"]
        assert sdk.ok and curl.ok, (model_id, sdk, curl)
        assert sdk.output.strip() == f"Hello from {FAKE_NAMES[provider]}", model_id
        assert f'"Hello from {FAKE_NAMES[provider]}"' in curl.output, model_id
    # Each example reached its model's provider, for that very model.
    reached = {}
    for call in models_server.fakes.calls:
        model = (call.body or {}).get("model") or call.path.split("/models/")[-1].split(":")[0]
        reached.setdefault(model, []).append(call.provider)
    for model_id, provider, *_ in models:
        assert reached[model_id] == [FAKE_NAMES[provider]] * 2, model_id


def test_openai_cache_writes_are_on_the_model_page_at_their_own_price(client, catalog):
    # GPT-6.1 Terra: 30-minute writes $1.25 / $2.50 per 1M tokens (1.25x input), 12-hour ones
    # $2.50 / $5.00 (2.5x), with the 10% margin.
    page = client.get("/models/gpt-6.1-terra").get_data(as_text=True)
    thresholds, prices = shown_prices(page)
    assert thresholds == [0, 272_000]
    assert prices["cache_write_5m"] == [1_375_000_000, 2_750_000_000]
    assert prices["cache_write_1h"] == [2_750_000_000, 5_500_000_000]
    labels = {a["data-class"]: cells[0] for a, cells in tables_of(page)["model-prices"] if a}
    assert labels["cache_write_5m"] == "Cache write, 30 min"
    assert labels["cache_write_1h"] == "Cache write, 12 h"
