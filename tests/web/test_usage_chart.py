"""Issue 10 item 1: the chart's data (spend and requests per UTC day, stacked by model or key) and
the page that draws it with the vendored Chart.js under the pages' CSP."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.services.keys import create_key
from tests.web.usage_records import add_usage

ROOT = Path(__file__).resolve().parents[2]


def test_item1_chart_data_is_spend_and_requests_per_utc_day_stacked_by_model_or_key(
    app, browser, make_account
):
    account_id = make_account("user@example.com")
    other_id = make_account("other@example.com")
    now = utcnow()
    today, yesterday = now.date(), (now - timedelta(days=1)).date()
    with app.app_context():
        laptop, _ = create_key(db.session.get(Account, account_id), name="laptop")
        laptop_id = laptop.id
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        add_usage(account_id, laptop_id, model="gpt-4o-mini", cost=1_500_000, at=midnight)
        add_usage(account_id, laptop_id, model="gpt-4o-mini", cost=1, at=midnight)
        # One second before midnight UTC: yesterday's, whatever the reader's time zone.
        add_usage(
            account_id,
            None,
            model="grok-4",
            provider="xai",
            cost=2_000_000_000,
            at=midnight - timedelta(seconds=1),
        )
        add_usage(other_id, None, model="gpt-4o-mini", cost=10**12, at=midnight)
        db.session.commit()
    browser.login("user@example.com")

    response = browser.get("/usage/chart.json?range=7d")
    assert response.status_code == 200
    data = response.get_json()
    assert data["time_zone"] == "UTC" and data["stack"] == "model"
    assert data["days"] == [(today - timedelta(days=6 - n)).isoformat() for n in range(7)]
    by_label = {s["label"]: s for s in data["series"]}
    assert list(by_label) == ["grok-4", "gpt-4o-mini"]  # the costliest first
    assert by_label["gpt-4o-mini"]["cost"] == ["0"] * 6 + ["0.001500001"]  # exact decimals
    assert by_label["gpt-4o-mini"]["requests"] == [0] * 6 + [2]
    assert by_label["grok-4"]["cost"][5] == "2" and by_label["grok-4"]["requests"][5] == 1
    assert data["requests"] == [0] * 5 + [1, 2]
    assert data["cost"][-2:] == ["2", "0.001500001"]

    by_key = browser.get("/usage/chart.json?range=7d&stack=key").get_json()
    assert by_key["stack"] == "key"
    assert {s["label"]: s["requests"][-2:] for s in by_key["series"]} == {
        "No key": [1, 0],
        "laptop": [0, 2],
    }
    # Filters apply to the chart as to the log.
    only = browser.get(f"/usage/chart.json?range=today&key={laptop_id}").get_json()
    assert only["days"] == [today.isoformat()]
    assert [s["label"] for s in only["series"]] == ["gpt-4o-mini"]
    assert yesterday.isoformat() in data["days"]


def test_item1_more_members_than_the_chart_draws_share_one_other_series(app, browser, make_account):
    account_id = make_account("user@example.com")
    early_today = utcnow().replace(hour=0, minute=1)
    with app.app_context():
        for n in range(11):
            add_usage(account_id, model=f"model-{n:02d}", cost=(n + 1) * 1_000, at=early_today)
        db.session.commit()
    browser.login("user@example.com")
    data = browser.get("/usage/chart.json?range=today").get_json()
    labels = [s["label"] for s in data["series"]]
    assert labels[:8] == [f"model-{n:02d}" for n in range(10, 2, -1)]
    assert labels[8] == "Other (3)"
    assert data["series"][8]["cost"] == ["0.000006"]  # 1 + 2 + 3 thousand nanocredits
    assert data["series"][8]["requests"] == [3]


def test_item1_the_page_draws_the_chart_with_vendored_scripts_only(app, browser, make_account):
    make_account("user@example.com")
    browser.login("user@example.com")
    response = browser.get("/usage")
    page = response.get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>", page)
    assert all('src="/static/' in attributes for attributes in scripts), (
        scripts
    )  # no CDN, no inline
    assert '<script src="/static/vendor/chart-4.6.1.umd.min.js" defer>' in page
    assert '<script src="/static/js/usage.js" defer>' in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert re.search(
        r'<canvas [^>]*data-usage-chart[^>]*data-chart-url="/usage/chart.json\?range=30d"', page
    )
    assert "UTC day" in page
    assert " style=" not in page
    vendored = (ROOT / "static/vendor/README.md").read_text()
    assert "| `chart-4.6.1.umd.min.js` | `chart.js` | 4.6.1 |" in vendored
    assert browser.get("/static/js/usage.js").status_code == 200
