"""Issue 10 item 2: the request log's filters, totals, paging by HTMX and addresses that keep
the filters; only the signed-in account's records, ever."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.keys import create_key
from app.services.money import display_credits
from app.services.usage_stats import UsageScope
from tests.web.usage_records import add_usage, raw_totals

DETAIL_LINK = re.compile(r'href="/usage/(\d+)"')


def shown_ids(page: str) -> list[int]:
    return [int(n) for n in DETAIL_LINK.findall(page)]


def figure(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)', page)
    assert match, element_id
    return match.group(1).strip()


@pytest.fixture
def usage(app, make_account):
    """An account with records of two keys, three models, every status, over 40 days; another
    account with records of the same model. Yields a namespace of ids."""
    account_id = make_account("user@example.com")
    other_id = make_account("other@example.com")
    now = utcnow()
    ids = {}
    with app.app_context():
        account = db.session.get(Account, account_id)
        laptop, _ = create_key(account, name="laptop")
        server, _ = create_key(account, name="server")
        theirs, _ = create_key(db.session.get(Account, other_id), name="theirs")
        rows = [
            ("old", laptop.id, "gpt-4o-mini", "openai", "ok", timedelta(days=40)),
            ("ten", server.id, "claude-haiku-4-5", "anthropic", "partial", timedelta(days=10)),
            ("three", laptop.id, "grok-4", "xai", "estimated", timedelta(days=3)),
            ("today", server.id, "gpt-4o-mini", "openai", "upstream_error", timedelta(0)),
            ("today2", laptop.id, "claude-haiku-4-5", "anthropic", "ok", timedelta(0)),
        ]
        for n, (name, key_id, model, provider, status, age) in enumerate(rows):
            at = now - age if age else now.replace(hour=0, minute=0, second=1)
            ids[name] = add_usage(
                account_id,
                key_id,
                model=model,
                provider=provider,
                status=status,
                cost=1_000_000 * (n + 1) + 7,
                at=at,
                input_tokens=100 * (n + 1),
                cache_read_tokens=10 * (n + 1),
                cache_write_5m_tokens=n,
                cache_write_1h_tokens=2 * n,
                output_tokens=50 * (n + 1),
                reasoning_tokens=n,
            )
        ids["theirs"] = add_usage(other_id, theirs.id, model="gpt-4o-mini", cost=99_000_000_000)
        db.session.commit()
        ids.update(account=account_id, laptop=laptop.id, server=server.id, their_key=theirs.id)
    return ids


def test_item2_each_filter_narrows_the_log_and_its_totals(app, browser, usage):
    browser.login("user@example.com")
    cases = {
        "range=30d": {"ten", "three", "today", "today2"},
        f"range=30d&key={usage['laptop']}": {"three", "today2"},
        "range=30d&model=claude-haiku-4-5": {"ten", "today2"},
        "range=30d&provider=openai": {"today"},
        "range=30d&status=estimated": {"three"},
        f"range=30d&key={usage['server']}&provider=anthropic&status=partial": {"ten"},
        "range=30d&model=no-such-model": set(),
    }
    for query, expected in cases.items():
        response = browser.get(f"/usage?{query}")
        page = response.get_data(as_text=True)
        assert response.status_code == 200, query
        assert set(shown_ids(page)) == {usage[name] for name in expected}, query
        assert "theirs" not in page and usage["theirs"] not in shown_ids(page)
        # The totals are those of the filtered set, whatever page of the log is shown.
        names = ["old", "ten", "three", "today", "today2"]
        cost = sum(1_000_000 * (n + 1) + 7 for n, name in enumerate(names) if name in expected)
        assert figure(page, "usage-requests") == str(len(expected)), query
        assert figure(page, "usage-spent") == display_credits(cost), query


def test_item2_totals_show_every_token_class_of_the_filtered_set(app, browser, usage):
    browser.login("user@example.com")
    page = browser.get("/usage?range=30d&model=claude-haiku-4-5").get_data(as_text=True)
    with app.app_context():
        today = utcnow().date()
        expected = raw_totals(
            UsageScope(
                usage["account"], today - timedelta(days=29), today, model_id="claude-haiku-4-5"
            )
        )
    totals = page[page.index('id="usage-totals"') : page.index("</section>")]
    for name in (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
    ):
        assert f"{expected[name]:,}" in totals, name
    assert f"({expected['reasoning_tokens']:,} reasoning)" in totals


def test_item2_date_ranges_are_utc_days(app, browser, usage):
    browser.login("user@example.com")
    today = utcnow().date()

    def ids(query: str) -> set[int]:
        response = browser.get(f"/usage?{query}")
        assert response.status_code == 200, query
        return set(shown_ids(response.get_data(as_text=True)))

    assert ids("range=today") == {usage["today"], usage["today2"]}
    assert ids("range=7d") == {usage["three"], usage["today"], usage["today2"]}
    assert ids("") == ids("range=30d")  # the default range
    first = (today - timedelta(days=45)).isoformat()
    last = (today - timedelta(days=5)).isoformat()
    assert ids(f"range=custom&from={first}&to={last}") == {usage["old"], usage["ten"]}
    # Dates alone mean a custom range; one day is from midnight to midnight UTC.
    day = (utcnow() - timedelta(days=10)).date().isoformat()
    assert ids(f"from={day}&to={day}") == {usage["ten"]}
    page = browser.get("/usage").get_data(as_text=True)
    assert "UTC day" in page


BAD_FILTERS = {
    "range=custom&from=2026-13-01&to=2026-12-31": "The from date must be a date like",
    "range=custom&from=2026-12-05&to=2026-12-01": "must not be after the to date",
    "range=custom&from=2026-12-05": "needs a from date and a to date",
    "range=forever": "Choose a range",
    "provider=openia": "Choose a provider from the list.",
    "status=fine": "Choose a status from the list.",
    "key=abc": "The key must be a number.",
    "stack=provider": "The chart stacks by model or by key.",
    "before=12x": "The page must be a number.",
}


def test_item2_bad_filters_get_a_clear_error_and_show_nothing(app, browser, usage):
    browser.login("user@example.com")
    for query, message in BAD_FILTERS.items():
        response = browser.get(f"/usage?{query}")
        page = response.get_data(as_text=True)
        assert response.status_code == 400, query
        assert message in html.unescape(page), query
        assert shown_ids(page) == [], query
        for path in ("/usage/chart.json", "/usage.csv"):
            refused = browser.get(f"{path}?{query}")
            assert refused.status_code == 400, (path, query)
            assert message in refused.get_data(as_text=True), (path, query)


def test_item2_other_customers_records_and_keys_are_never_reachable(app, browser, usage):
    browser.login("user@example.com")
    page = browser.get(f"/usage?key={usage['their_key']}")
    assert page.status_code == 400 and "That key is not one of yours." in page.get_data(
        as_text=True
    )
    # Their record as a page cursor names no record of ours.
    refused = browser.get(f"/usage?before={usage['theirs']}")
    assert refused.status_code == 400
    assert "does not exist" in refused.get_data(as_text=True)
    # Asked for by the pager, the error replaces the view, where the filters are.
    refused = browser.get(
        f"/usage?before={usage['theirs']}",
        headers={"HX-Request": "true", "HX-Target": "usage-table"},
    )
    assert refused.status_code == 400 and refused.headers["HX-Retarget"] == "#usage-view"
    assert refused.get_data(as_text=True).lstrip().startswith('<div id="usage-view"')
    page = browser.get("/usage?range=30d&model=gpt-4o-mini").get_data(as_text=True)
    assert set(shown_ids(page)) == {usage["today"]}
    assert figure(page, "usage-requests") == "1"


def test_item2_the_log_pages_by_htmx_newest_first_and_the_address_keeps_the_filters(
    app, browser, make_account
):
    account_id = make_account("user@example.com")
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="k")
        key_id = key.id
        # Some share a timestamp: the id breaks the tie, so no record is skipped or repeated.
        ids = [add_usage(account_id, key_id, at=at + timedelta(seconds=n // 3)) for n in range(123)]
        add_usage(account_id, key_id, model="grok-4", provider="xai", at=at)
        db.session.commit()
    browser.login("user@example.com")
    query = f"range=7d&key={key_id}&model=gpt-4o-mini"
    first = browser.get(f"/usage?{query}").get_data(as_text=True)
    newest_first = sorted(ids, reverse=True)  # ids and times rise together here
    assert shown_ids(first) == newest_first[:50]
    older = re.search(r'href="(/usage\?[^"]*before=\d+[^"]*)" rel="next"', first)
    assert older, "no link to older records"
    link = html.unescape(older.group(1))
    assert f"key={key_id}" in link and "model=gpt-4o-mini" in link and "range=7d" in link
    assert 'hx-target="#usage-table"' in first and 'hx-push-url="true"' in first

    seen = shown_ids(first)
    while older:
        response = browser.get(link, headers={"HX-Request": "true", "HX-Target": "usage-table"})
        fragment = response.get_data(as_text=True)
        assert fragment.lstrip().startswith('<div id="usage-table"')  # the log alone
        assert "<form" not in fragment
        seen += shown_ids(fragment)
        older = re.search(r'href="(/usage\?[^"]*before=\d+[^"]*)" rel="next"', fragment)
        link = html.unescape(older.group(1)) if older else None
        last_fragment = fragment
    assert seen == newest_first  # every record once, newest first, the other model's left out
    newer = re.search(r'href="(/usage\?[^"]*after=\d+[^"]*)" rel="prev"', last_fragment)
    back = browser.get(html.unescape(newer.group(1))).get_data(as_text=True)
    assert shown_ids(back) == newest_first[50:100]
    # The address of a page, loaded afresh (a reload, the back button), is that page in full.
    full = browser.get(link or html.unescape(newer.group(1))).get_data(as_text=True)
    assert "<form" in full and "<html" in full


def test_item2_the_form_shows_the_filters_of_the_address(app, browser, usage):
    browser.login("user@example.com")
    page = browser.get(
        f"/usage?range=custom&from=2026-11-01&to=2026-11-30&key={usage['server']}"
        "&model=grok-4&provider=xai&status=partial&stack=key"
    ).get_data(as_text=True)
    assert '<option value="custom" selected>' in page
    assert 'value="2026-11-01"' in page and 'value="2026-11-30"' in page
    assert f'<option value="{usage["server"]}" selected>' in page
    assert '<option value="grok-4" selected>' in page
    assert '<option value="xai" selected>' in page
    assert '<option value="partial" selected>' in page
    assert 'value="key" checked' in page
    chart_url = html.unescape(re.search(r'data-chart-url="([^"]+)"', page).group(1))
    csv_url = html.unescape(re.search(r'href="(/usage\.csv[^"]*)"', page).group(1))
    for url in (chart_url, csv_url):
        for part in (
            "range=custom",
            "from=2026-11-01",
            "to=2026-11-30",
            f"key={usage['server']}",
            "model=grok-4",
            "provider=xai",
            "status=partial",
        ):
            assert part in url, (url, part)
    assert "stack=key" in chart_url
    # The form's HTMX requests swap the whole view and push the address.
    assert 'hx-target="#usage-view"' in page and 'hx-push-url="true"' in page


def test_item2_times_are_marked_up_in_utc_for_the_browser_to_show_in_its_time_zone(
    app, browser, make_account
):
    account_id = make_account("user@example.com")
    at = utcnow().replace(hour=0, minute=4, second=5, microsecond=0)
    with app.app_context():
        add_usage(account_id, at=at)
        db.session.commit()
    browser.login("user@example.com")
    page = browser.get("/usage?range=today").get_data(as_text=True)
    stamp = at.strftime("%Y-%m-%d")
    time_element = re.search(r"<time ([^>]*)>([^<]*)</time>", page)
    attributes = " ".join(time_element.group(1).split())
    assert attributes == f'datetime="{stamp}T00:04:05Z" title="{stamp} 00:04:05 UTC" data-local'
    assert time_element.group(2) == f"{stamp} 00:04 UTC"  # until the script shows local time
