"""Issue 10 item 9 in Chromium: the allowed-models checklist filters as one types, a key is edited
in place and paused and resumed without leaving the page; without JavaScript the same works
with plain checkboxes and whole pages."""

from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models import Account, ApiKey
from tests.helpers import sign_in_page

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def key_id(app, make_account, catalog):
    """A customer, edith@example.com, with one key named "laptop"."""
    from app.services.keys import create_key

    account_id = make_account("edith@example.com")
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="laptop")
        db.session.commit()
        return key.id


def stored(app, key_id: int) -> ApiKey:
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        db.session.expunge(key)
        return key


def _is_post_to(path):
    return lambda response: response.request.method == "POST" and response.url.endswith(path)


def visible_models(checklist) -> list[str]:
    return checklist.locator(".model-options > li:visible code").all_inner_texts()


def test_issue10_9_filter_the_checklist_edit_pause_and_resume_in_place(app, page, key_id):
    sign_in_page(page, "edith@example.com")
    page.goto("/keys")
    page.evaluate("window.__stillHere = true")

    # The create form's checklist: typing narrows the models, ticks survive the filter.
    create = page.locator("details.create-key")
    create.locator("summary").click()
    checklist = create.locator("[data-model-checklist]")
    everything = visible_models(checklist)
    assert len(everything) >= 20
    checklist.get_by_label("Filter the models").fill("claude haiku")
    expect(checklist.locator(".model-options > li:visible")).to_have_count(
        len([m for m in everything if "claude" in m and "haiku" in m])
    )
    assert all("haiku" in m for m in visible_models(checklist))
    checklist.get_by_label("Filter the models").fill("no such model")
    expect(checklist.locator("[data-model-none]")).to_be_visible()
    checklist.get_by_label("Filter the models").fill("")
    assert visible_models(checklist) == everything

    # Edit the key in its row.
    row = page.locator(f"#key-{key_id}")
    with page.expect_response(lambda r: r.url.endswith(f"/keys/{key_id}/edit")):
        row.get_by_role("button", name="Edit laptop").click()
    form = page.locator(f"#key-{key_id} form.key-edit-form")
    expect(form).to_be_visible()
    name = form.get_by_label("Name")
    expect(name).to_be_focused()
    name.fill("build server")
    form.get_by_label("Credit limit (optional)").fill("2.5")
    form.get_by_label("Limit resets").select_option("daily")
    models = form.locator("[data-model-checklist]")
    models.get_by_label("Filter the models").fill("4o-mini")
    assert visible_models(models) == ["gpt-4o-mini"]
    models.get_by_role("checkbox", name=re.compile(r"^gpt-4o-mini ")).check()
    # Enter in the filter must not submit the form.
    models.get_by_label("Filter the models").press("Enter")
    expect(form).to_be_visible()
    expect(models.locator("[data-model-count]")).to_contain_text("1 ticked")
    models.get_by_label("Filter the models").fill("haiku-4-5")
    models.get_by_role("checkbox", name=re.compile(r"^claude-haiku-4-5 ")).check()
    with page.expect_response(_is_post_to(f"/keys/{key_id}")) as saved:
        form.get_by_role("button", name="Save changes").click()
    assert saved.value.status == 200
    row = page.locator(f"#key-{key_id}")
    expect(row.get_by_role("button", name="Edit build server")).to_be_focused()
    expect(row.locator(".key-name")).to_contain_text("build server")
    expect(row).to_contain_text("2.50 a day")
    expect(row).to_contain_text("claude-haiku-4-5, gpt-4o-mini")
    key = stored(app, key_id)
    assert (key.name, key.limit_nanocredits, key.limit_reset) == (
        "build server",
        2_500_000_000,
        "daily",
    )
    assert key.allowed_models == ["claude-haiku-4-5", "gpt-4o-mini"]

    # A bad edit shows its error in the row and changes nothing. The form is swapped in and
    # settled (its fields hold the saved values) before it is changed.
    with page.expect_response(lambda r: r.url.endswith(f"/keys/{key_id}/edit")):
        row.get_by_role("button", name="Edit build server").click()
    form = page.locator(f"#key-{key_id} form.key-edit-form")
    limit = form.get_by_label("Credit limit (optional)")
    expect(limit).to_have_value("2.5")
    expect(form.get_by_label("Name")).to_be_focused()
    limit.fill("")
    with page.expect_response(_is_post_to(f"/keys/{key_id}")) as refused:
        form.get_by_role("button", name="Save changes").click()
    assert refused.value.status == 400
    expect(page.locator(f"#key-{key_id}")).to_contain_text("Set a credit limit for it to reset")
    page.locator(f"#key-{key_id}").get_by_role("button", name="Cancel").click()
    expect(page.locator(f"#key-{key_id} form.key-edit-form")).to_have_count(0)
    assert stored(app, key_id).limit_nanocredits == 2_500_000_000

    # Pause, then resume.
    row = page.locator(f"#key-{key_id}")
    with page.expect_response(_is_post_to("/pause")):
        row.get_by_role("button", name="Pause build server").click()
    expect(row.locator("mark.status")).to_have_text("paused")
    assert stored(app, key_id).paused_at is not None
    with page.expect_response(_is_post_to("/resume")):
        row.get_by_role("button", name="Resume build server").click()
    expect(row.locator("mark.status")).to_have_text("active")
    assert stored(app, key_id).paused_at is None
    assert page.evaluate("window.__stillHere") is True


def test_issue10_9_editing_and_pausing_without_javascript(app, page_without_js, key_id):
    page = page_without_js
    sign_in_page(page, "edith@example.com")
    page.goto("/keys")
    # No filter without JavaScript: the models are plain checkboxes.
    page.locator("details.create-key summary").click()
    expect(page.get_by_label("Filter the models")).to_be_hidden()
    expect(page.get_by_role("checkbox", name=re.compile(r"^gpt-4o-mini "))).to_be_visible()
    page.get_by_role("button", name="Edit laptop").click()
    expect(page).to_have_url(re.compile(rf"/keys/{key_id}/edit$"))
    form = page.locator(f"#key-{key_id} form.key-edit-form")
    form.get_by_label("Name").fill("desk")
    form.get_by_role("checkbox", name=re.compile(r"^gpt-4o ")).check()
    form.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(r"/keys$"))
    expect(page.locator("#notices")).to_contain_text("is saved")
    assert stored(app, key_id).name == "desk"
    assert stored(app, key_id).allowed_models == ["gpt-4o"]

    page.get_by_role("button", name="Pause desk").click()
    expect(page).to_have_url(re.compile(r"/keys$"))
    expect(page.locator(f"#key-{key_id} mark.status")).to_have_text("paused")
    page.get_by_role("button", name="Resume desk").click()
    expect(page.locator(f"#key-{key_id} mark.status")).to_have_text("active")
