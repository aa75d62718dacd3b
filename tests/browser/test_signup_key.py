"""A person signs up, creates an API key and sees it once; the pricing filters narrow the table.

Chromium drives the live server; the database is checked directly through the app.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect

KEY_PATTERN = re.compile(r"ok-[A-Za-z0-9_-]{43}")
PASSWORD = "a long enough passphrase"
FULL_KEY = re.compile(r"^ok-[A-Za-z0-9_-]{43}$")


def _is_post_to(path):
    return lambda response: response.request.method == "POST" and response.url.endswith(path)


def _sign_up(page, email: str) -> None:
    page.goto("/signup")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("I am at least 18 years old").check()
    page.get_by_label(re.compile(r"accept the\s+Terms of Service")).check()
    page.get_by_role("main").get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text(email)


def _go_to_keys(page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    expect(page).to_have_url(re.compile(r"/keys$"))
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()


def _stored_key(app, email: str):
    from app.extensions import db
    from app.models import Account, ApiKey

    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == email))
        assert account is not None
        keys = db.session.scalars(select(ApiKey).where(ApiKey.account_id == account.id)).all()
        assert len(keys) == 1
        key = keys[0]
        return {"name": key.name, "key_hash": key.key_hash, "last4": key.last4}


def _assert_only_the_hash_is_stored(app, email: str, plaintext: str) -> None:
    from app.services.keys import hash_key

    stored = _stored_key(app, email)
    assert stored["name"] == "laptop"
    with app.app_context():
        assert stored["key_hash"] == hash_key(plaintext)
    assert plaintext not in stored.values()
    assert stored["last4"] == plaintext[-4:]


def _assert_key_is_gone(page, plaintext: str) -> None:
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert plaintext not in page.content()
    assert not KEY_PATTERN.search(page.content())
    row = page.locator("#keys-table tbody tr", has_text="laptop")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"ok-…{plaintext[-4:]}")


def test_sign_up_and_create_a_key_shown_once(app, page):
    email = "ada@example.com"
    _sign_up(page, email)
    _go_to_keys(page)

    # No full navigation may happen: htmx swaps the panel in place.
    page.evaluate("window.__stillHere = true")
    page.get_by_label("Name").fill("laptop")
    with page.expect_response(_is_post_to("/keys")) as created:
        page.get_by_role("button", name="Create key", exact=True).click()
    response = created.value
    assert response.status == 201
    assert response.request.headers.get("hx-request") == "true"

    key_input = page.locator("#new-key-value")
    expect(key_input).to_be_visible()
    plaintext = key_input.input_value()
    assert FULL_KEY.match(plaintext), plaintext
    assert page.evaluate("window.__stillHere") is True
    expect(page).to_have_url(re.compile(r"/keys$"))
    assert page.content().count(plaintext) == 1
    expect(page.locator("#keys-table tbody tr", has_text="laptop")).to_contain_text(
        f"ok-…{plaintext[-4:]}"
    )

    copy = page.locator("button[data-copy-target=new-key-value]")
    expect(copy).to_have_accessible_name("Copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext

    page.reload()
    _assert_key_is_gone(page, plaintext)
    _assert_only_the_hash_is_stored(app, email, plaintext)


def test_sign_up_and_create_a_key_without_javascript(app, page_without_js):
    page = page_without_js
    email = "grace@example.com"
    _sign_up(page, email)
    _go_to_keys(page)

    page.get_by_label("Name").fill("laptop")
    with page.expect_response(_is_post_to("/keys")) as created:
        page.get_by_role("button", name="Create key", exact=True).click()
    response = created.value
    assert response.status == 201
    assert response.request.headers.get("hx-request") is None

    # The whole page came back from the server, with the key in it once.
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    key_input = page.locator("#new-key-value")
    expect(key_input).to_be_visible()
    plaintext = key_input.input_value()
    assert FULL_KEY.match(plaintext), plaintext
    assert page.content().count(plaintext) == 1
    # Without JavaScript a Copy button could not work, so none is shown.
    expect(page.get_by_role("button", name="Copy")).to_have_count(0)

    # Reloading would post the form again; visiting the page is what a person does.
    page.goto("/keys")
    _assert_key_is_gone(page, plaintext)
    _assert_only_the_hash_is_stored(app, email, plaintext)


def _model_ids(page) -> list[str]:
    return page.locator("#pricing-results tbody th[scope=row] code").all_inner_texts()


def _is_pricing_fragment(response) -> bool:
    return "/pricing" in response.url and response.request.headers.get("hx-request") == "true"


def test_pricing_filters_narrow_the_rows(app, catalog, page):
    page.goto("/pricing")
    everything = _model_ids(page)
    assert len(everything) >= 20
    assert {"gpt-5", "claude-sonnet-5-5", "gemini-3.5-flash-lite", "grok-4.3"} <= set(everything)
    page.evaluate("window.__stillHere = true")

    with page.expect_response(_is_pricing_fragment):
        page.get_by_label("Provider").select_option("anthropic")
    expect(page).to_have_url(re.compile(r"provider=anthropic"))
    anthropic = _model_ids(page)
    assert anthropic and all(m.startswith("claude-") for m in anthropic)
    assert len(anthropic) < len(everything)
    providers = page.locator("#pricing-results tbody tr:has(th[scope=row]) td:first-child")
    assert set(providers.all_inner_texts()) == {"Anthropic"}

    with page.expect_response(_is_pricing_fragment):
        page.get_by_label("Search models").fill("sonnet")
    expect(page).to_have_url(re.compile(r"q=sonnet"))
    assert _model_ids(page) == ["claude-sonnet-5-5"]

    # Back to every provider: the search alone still narrows, across providers.
    with page.expect_response(_is_pricing_fragment):
        page.get_by_label("Search models").fill("mini")
    with page.expect_response(_is_pricing_fragment):
        page.get_by_label("Provider").select_option("")
    # The response has come; its rows are in once htmx has swapped them and pushed the URL.
    expect(page).not_to_have_url(re.compile(r"provider=anthropic"))
    expect(page.locator("#pricing-results tbody th[scope=row] code").first).to_be_visible()
    minis = _model_ids(page)
    assert minis and all("mini" in m for m in minis)
    assert any(m.startswith("gpt-") for m in minis) and any(m.startswith("grok-") for m in minis)

    with page.expect_response(_is_pricing_fragment):
        page.get_by_label("Search models").fill("no such model")
    expect(page.locator("#pricing-results")).to_contain_text("No model matches.")
    assert page.evaluate("window.__stillHere") is True


def test_key_form_errors_and_revoking_stay_in_the_page(app, page):
    # A 400 fragment is swapped in like a 2xx (the htmx-config in base.html), so errors show.
    _sign_up(page, "lin@example.com")
    _go_to_keys(page)
    page.evaluate("window.__stillHere = true")
    with page.expect_response(_is_post_to("/keys")) as refused:
        page.get_by_role("button", name="Create key", exact=True).click()
    assert refused.value.status == 400
    name = page.get_by_label("Name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(page.locator("#name-error")).to_have_text("This field is required.")
    expect(page.locator("#keys-table tbody")).to_contain_text("No keys yet.")

    name.fill("laptop")
    with page.expect_response(_is_post_to("/keys")):
        page.get_by_role("button", name="Create key", exact=True).click()
    row = page.locator("#keys-table tbody tr", has_text="laptop")
    expect(row.locator("mark.status")).to_have_text("active")

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(_is_post_to("/revoke")) as revoked:
        row.get_by_role("button", name="Revoke laptop").click()
    assert revoked.value.request.headers.get("hx-request") == "true"
    expect(row.locator("mark.status")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke laptop")).to_have_count(0)
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert page.evaluate("window.__stillHere") is True
