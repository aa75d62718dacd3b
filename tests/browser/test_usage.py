"""Issue 10 items 1, 2 and 6 in Chromium: the usage chart draws on a canvas under the CSP and
switches between stacking by model and by key; a filter and the pager swap the view by HTMX with
the address following, and the back button brings the earlier view back; times show in the
browser's time zone; a row opens its detail in a dialog."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.keys import create_key
from tests.helpers import sign_in_page
from tests.web.usage_records import add_usage

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def chart_labels(page) -> list[str]:
    return page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-usage-chart]'))"
        ".data.datasets.map((d) => d.label)"
    )


def test_usage_chart_filters_paging_back_button_and_detail(app, make_account, new_context):
    account_id = make_account("user@example.com")
    now = utcnow()
    with app.app_context():
        account = db.session.get(Account, account_id)
        laptop = create_key(account, name="laptop")[0].id
        server = create_key(account, name="server")[0].id
        for n in range(70):
            add_usage(
                account_id,
                laptop if n % 2 else server,
                model="grok-4" if n % 5 == 0 else "gpt-4o-mini",
                provider="xai" if n % 5 == 0 else "openai",
                request_id=f"req-{n:03d}",
                cost=1_000_000 * (n + 1),
                at=now - timedelta(hours=70 - n),
            )
        db.session.commit()
    context = new_context(timezone_id="America/New_York")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    sign_in_page(page, "user@example.com")

    page.goto("/usage")
    canvas = page.locator("canvas[data-usage-chart]")
    expect(canvas).to_have_attribute("data-chart-state", "drawn")
    assert canvas.bounding_box()["height"] > 100
    assert chart_labels(page) == ["gpt-4o-mini", "grok-4", "Requests"]
    # Times in the browser's zone (New York), UTC kept in the title.
    first_time = page.locator("#usage-table time").first
    expect(first_time).to_have_text(re.compile(r"EST|EDT|GMT-[45]"))
    expect(first_time).to_have_attribute("title", re.compile(r"UTC$"))

    # Stack by key: the view is swapped by HTMX and the chart redrawn with the keys.
    page.evaluate("window.notReloaded = true")
    page.get_by_label("By key").check()
    expect(page).to_have_url(re.compile(r"stack=key"))
    expect(page.locator("canvas[data-usage-chart]")).to_have_attribute("data-chart-stack", "key")
    assert sorted(chart_labels(page)) == ["Requests", "laptop", "server"]

    # A filter: only gpt-4o-mini, the totals follow, the address keeps it.
    page.get_by_label("Model", exact=True).select_option("gpt-4o-mini")
    expect(page).to_have_url(re.compile(r"model=gpt-4o-mini"))
    expect(page.locator("#usage-requests")).to_have_text("56")
    expect(page.locator("#usage-table tbody tr")).to_have_count(50)
    expect(page.locator("#usage-table code", has_text="grok-4")).to_have_count(0)

    # The pager swaps the log alone.
    page.get_by_role("link", name="Older").click()
    expect(page).to_have_url(re.compile(r"before=\d+"))
    expect(page.locator("#usage-table tbody tr")).to_have_count(6)
    assert page.evaluate("window.notReloaded") is True
    assert "model=gpt-4o-mini" in page.url and "stack=key" in page.url

    # Back: the newest page of the same filters, the chart drawn again.
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"before="))
    expect(page.locator("#usage-table tbody tr")).to_have_count(50)
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    expect(page.locator("canvas[data-usage-chart]")).to_have_attribute("data-chart-state", "drawn")
    assert sorted(chart_labels(page)) == ["Requests", "laptop", "server"]

    # A row's detail opens in a dialog over the log.
    page.locator("#usage-table tbody tr").first.get_by_role("link").click()
    dialog = page.locator("#usage-detail")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("req-069")
    expect(dialog).to_contain_text("Tokens and prices")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert problems == []
