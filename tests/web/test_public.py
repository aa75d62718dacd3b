"""Public pages: home, pricing (with the Terms' pricing line), terms (every section), probes."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CatalogModel
from app.services.terms import TERMS_PATH, load_terms

TERMS_SOURCE = TERMS_PATH.read_text(encoding="utf-8")
# The operator's document as it was given (reference/terms-of-service.txt), kept with the tests.
OPERATORS_TERMS = Path(__file__).resolve().parent.parent / "fixtures" / "terms-of-service.txt"


def visible_text(html: str) -> str:
    text = re.sub(r"</?(a|strong|em|code)\b[^>]*>", "", html)
    text = re.sub(r"<[^>]+>", " ", text)
    text = text.replace("&amp;", "&").replace("&#39;", "'").replace("&#34;", '"')
    return re.sub(r"\s+", " ", text)


def test_terms_page_renders_every_section_and_item(app, client):
    page = visible_text(client.get("/terms").get_data(as_text=True))
    terms = load_terms()
    assert [s.number for s in terms.sections] == list(range(1, 13))
    assert "Last updated: February 19, 2026" in page
    for section in terms.sections:
        assert f"{section.number}. {section.title}" in page
        for kind, block in section.blocks:
            for text in block if kind == "ul" else [block]:
                expected = text.replace("{support_email}", app.config["SUPPORT_EMAIL"])
                assert re.sub(r"\s+", " ", expected) in page
    assert "{support_email}" not in page
    assert page.count(app.config["SUPPORT_EMAIL"]) >= 2  # section 12 and the footer


def test_terms_content_file_matches_the_operators_document():
    # Every line of the operator's text is kept, except the address our copy could not read.
    original = OPERATORS_TERMS.read_text(encoding="utf-8").splitlines()
    ours = TERMS_SOURCE.splitlines()
    assert len(original) == len(ours)
    differing = [(a, b) for a, b in zip(original, ours, strict=True) if a != b]
    assert len(differing) == 1 and "{support_email}" in differing[0][1]


def test_terms_show_the_configured_support_email(app):
    client = app.test_client()
    app.config["SUPPORT_EMAIL"] = "help@operator.example"
    try:
        page = client.get("/terms").get_data(as_text=True)
    finally:
        app.config["SUPPORT_EMAIL"] = "support@1key4ai.com"
    assert 'href="mailto:help@operator.example"' in page


def test_pricing_lists_every_enabled_model_with_margin_included(app, client, catalog):
    page = client.get("/pricing").get_data(as_text=True)
    assert "Pricing is subject to change; current rates are always displayed here." in page
    with app.app_context():
        models = db.session.scalars(select(CatalogModel)).all()
        for model in models:
            # Models their provider retired are never sold (issue 11 item 7).
            assert (f"<code>{model.model_id}</code>" in page) is model.enabled, model.model_id
        gpt5 = next(m for m in models if m.model_id == "gpt-5")
        input_price = next(p for p in gpt5.prices if p.token_class == "input")
    # $1.25 list + 10% margin = 1.375 credits per 1M tokens.
    assert input_price.sell_price_nanos_per_mtok == 1_375_000_000
    assert "1.375" in page


def test_pricing_shows_long_context_tiers(client, catalog):
    page = client.get("/pricing?q=gemini-3.1-pro").get_data(as_text=True)
    assert "Prompts above 200,000 tokens" in page
    # Gemini 3.1 Pro above 200k: $4.00 input -> 4.40 credits with the margin.
    assert "4.40" in page


def test_pricing_filters_by_provider_and_search(client, catalog):
    page = client.get("/pricing?provider=anthropic").get_data(as_text=True)
    assert "claude-haiku-4-5" in page and "gpt-5-nano" not in page
    page = client.get("/pricing?q=FLASH").get_data(as_text=True)
    assert "gemini-2.5-flash-lite" in page and "claude-haiku-4-5" not in page
    fragment = client.get("/pricing?provider=xai", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="pricing-results"')
    assert "grok-4" in html and "gpt-4o" not in html
    assert "HX-Request" in fragment.headers["Vary"]
    assert "No model matches" in client.get("/pricing?q=zzz-nothing").get_data(as_text=True)
    assert client.get("/pricing?provider=<script>&q=" + "x" * 5000).status_code == 200


@pytest.mark.parametrize("search", ["%", "_", "gpt_5", "gpt%nano", "\\"])
def test_pricing_search_treats_wildcards_as_characters(client, catalog, search):
    page = client.get("/pricing", query_string={"q": search}).get_data(as_text=True)
    assert "No model matches" in page
    assert "gpt-5-nano" not in page


def test_disabled_models_are_not_priced(app, client, catalog):
    with app.app_context():
        model = db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == "o3"))
        model.enabled = False
        db.session.commit()
    assert ">o3<" not in client.get("/pricing").get_data(as_text=True)


def test_models_endpoint_prices_per_token_as_decimal_strings(client, catalog):
    body = client.get("/v1/models").get_json()
    by_id = {m["id"]: m for m in body["data"]}
    gpt5 = by_id["gpt-5"]
    assert gpt5["provider"] == "openai"
    assert gpt5["pricing"]["prompt"] == "0.000001375"
    assert gpt5["pricing"]["completion"] == "0.000011"
    assert gpt5["pricing"]["input_cache_read"] == "0.0000001375"
    for model in body["data"]:
        for value in model["pricing"].values():
            assert isinstance(value, str) and "e" not in value.lower()
            assert Decimal(value) >= 0


def test_home_page_explains_how_to_start(client, catalog):
    page = client.get("/").get_data(as_text=True)
    assert "One API key" in page
    assert "/signup" in page and "/pricing" in page and "/terms" in page


def test_probes(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_reports_a_dead_redis(app):
    from redis import Redis

    real = app.extensions["onekey_redis"]
    app.extensions["onekey_redis"] = Redis(unix_socket_path="/nonexistent/redis.sock")
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["onekey_redis"] = real
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"] != "ok"


def test_pages_carry_security_headers_and_a_request_id(client):
    response = client.get("/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.headers["X-Request-Id"]) >= 16


def test_unknown_page_is_a_friendly_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_pages_use_only_vendored_assets(client, catalog):
    for path in ("/", "/pricing", "/terms", "/signup"):
        html = client.get(path).get_data(as_text=True)
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not url.startswith(("http://", "https://", "//")) or url.startswith("mailto:"), (
                url
            )
