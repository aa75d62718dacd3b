"""Provider health (issue 11, item 5): exact figures from seeded usage records, and the flag on a
provider failing now."""

from __future__ import annotations

import re
from datetime import timedelta

from app.admin.health import nearest_rank, provider_health
from app.extensions import db
from app.models import UsageRecord
from app.models.types import utcnow
from tests.helpers import Browser

HX = {"HX-Request": "true"}


def words(html: str) -> str:
    return " ".join(html.split())


def text_of(html: str) -> str:
    """What the page reads: its text without tags, whitespace collapsed."""
    return words(re.sub(r"<[^>]+>", "", html))


def seed_usage(app, account_id: int) -> None:
    """Records by provider, model, status, age, latency and time to first token (ms)."""
    now = utcnow()
    rows = []

    def add(provider, model, status, age, latency, first_token, count=1):
        for _ in range(count):
            rows.append(
                UsageRecord(
                    account_id=account_id,
                    request_id=f"req-{len(rows)}",
                    provider=provider,
                    model_id=model,
                    route="/v1/chat/completions",
                    status=status,
                    latency_ms=latency,
                    time_to_first_token_ms=first_token,
                    created_at=now - age,
                )
            )

    half_hour, three_hours = timedelta(minutes=30), timedelta(hours=3)
    # openai gpt-4o-mini, half an hour ago: 18 answered in 100..1800 ms (first tokens 10..180),
    # one cut short at 1900 (190), one estimated at 2000 (no first token), two upstream errors.
    for i in range(1, 19):
        add("openai", "gpt-4o-mini", "ok", half_hour, 100 * i, 10 * i)
    add("openai", "gpt-4o-mini", "partial", half_hour, 1900, 190)
    add("openai", "gpt-4o-mini", "estimated", half_hour, 2000, None)
    add("openai", "gpt-4o-mini", "upstream_error", half_hour, 50, None, count=2)
    # Three hours ago (the day only): two slow ones. Thirty hours ago: outside both windows.
    add("openai", "gpt-4o-mini", "ok", three_hours, 10_000, 5_000)
    add("openai", "gpt-4o-mini", "ok", three_hours, 12_000, 6_000)
    add("openai", "gpt-4o-mini", "ok", timedelta(hours=30), 1, 1, count=5)
    add("openai", "gpt-4o", "ok", half_hour, 700, 70)
    # Anthropic, the last two minutes: 3 of 4 failed upstream. Failing now.
    add("anthropic", "claude-sonnet-4-5", "upstream_error", timedelta(minutes=2), 30, None, count=3)
    add("anthropic", "claude-sonnet-4-5", "ok", timedelta(minutes=2), 400, 40)
    # An hour and a half ago anthropic failed too, but that is not now.
    add("anthropic", "claude-haiku-4-5", "upstream_error", timedelta(minutes=90), 30, None, count=5)
    # Gemini: 1 of 4 failed in the last minutes (under half). xAI: 2 of 2, but too few to judge.
    add("google", "gemini-2.5-flash", "ok", timedelta(minutes=1), 300, 30, count=3)
    add("google", "gemini-2.5-flash", "upstream_error", timedelta(minutes=1), 20, None)
    add("xai", "grok-4", "upstream_error", timedelta(minutes=1), 20, None, count=2)
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()


def test_issue11_item5_nearest_rank_is_percentile_disc():
    values = list(range(1, 21))
    assert nearest_rank(values, 0.5) == 10
    assert nearest_rank(values, 0.95) == 19
    assert nearest_rank([7], 0.95) == 7
    assert nearest_rank([], 0.5) is None


def test_issue11_item5_figures_are_exact_per_provider_model_and_window(app, make_account):
    seed_usage(app, make_account("customer@example.com"))
    with app.app_context():
        report = {p.total.provider: p for p in provider_health()}
    assert sorted(report) == ["anthropic", "google", "openai", "xai"]

    openai = report["openai"]
    mini = {m.model_id: m for m in openai.models}["gpt-4o-mini"]
    hour, day = mini.windows["hour"], mini.windows["day"]
    assert hour.requests == 22
    assert hour.outcomes == {"ok": 18, "upstream_error": 2, "partial": 1, "estimated": 1}
    assert round(hour.percent("upstream_error"), 2) == 9.09
    assert round(hour.percent("partial"), 2) == 4.55
    # Answered latencies 100..2000 (20): ranks 10 and 19. First tokens 10..190 (19): 10, 19.
    assert hour.latency_ms == {0.5: 1000, 0.95: 1900}
    assert hour.first_token_ms == {0.5: 100, 0.95: 190}
    assert day.requests == 24
    assert day.outcomes["ok"] == 20
    # With the two slow ones (22 latencies, 21 first tokens): ranks 11 and 21, 11 and 20.
    assert day.latency_ms == {0.5: 1100, 0.95: 10_000}
    assert day.first_token_ms == {0.5: 110, 0.95: 5_000}

    total = openai.total.windows["hour"]
    assert total.requests == 23
    # 100..2000 and gpt-4o's 700: rank 11 of 21 is 1000, rank 20 is 1900.
    assert total.latency_ms == {0.5: 1000, 0.95: 1900}
    assert total.first_token_ms == {0.5: 90, 0.95: 180}  # 10..190 and 70: ranks 10 and 19
    assert openai.total.recent_requests == 0
    assert not openai.total.failing

    anthropic = report["anthropic"]
    assert (anthropic.total.recent_requests, anthropic.total.recent_errors) == (4, 3)
    assert anthropic.total.failing
    sonnet, haiku = sorted(anthropic.models, key=lambda m: m.model_id, reverse=True)
    assert sonnet.model_id == "claude-sonnet-4-5" and sonnet.failing
    assert haiku.windows["hour"].outcomes["upstream_error"] == 0
    assert haiku.windows["day"].outcomes["upstream_error"] == 5
    assert not haiku.failing
    # Nothing answered: no latency to report.
    assert haiku.windows["day"].latency_ms == {0.5: None, 0.95: None}
    assert (report["google"].total.recent_errors, report["google"].total.recent_requests) == (1, 4)
    assert not report["google"].total.failing
    assert (report["xai"].total.recent_errors, report["xai"].total.recent_requests) == (2, 2)
    assert not report["xai"].total.failing


def test_issue11_item5_the_page_shows_the_figures_and_who_is_failing_now(app, admin, make_account):
    seed_usage(app, make_account("customer@example.com"))
    page = admin.get("/admin/health")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    text = text_of(html)
    assert (
        "anthropic is failing now: 3 of its 4 requests of the last 5 minutes failed upstream."
        in text
    )
    assert "google is failing now" not in text and "xai is failing now" not in text
    mini = words(html.split('id="health-openai-gpt-4o-mini"')[1].split("</tr>")[0])
    assert '<td class="num">22</td>' in mini
    assert '<span class="flag">2</span> <small>9.1%</small>' in mini
    assert "1,000 ms" in mini and "1,900 ms" in mini and "190 ms" in mini
    sonnet = html.split('id="health-anthropic-claude-sonnet-4-5"')[1].split("</tr>")[0]
    assert '<mark class="status status-revoked">failing now</mark>' in sonnet
    assert "3 / 4" in sonnet

    day = admin.get("/admin/health?window=day").get_data(as_text=True)
    mini = words(day.split('id="health-openai-gpt-4o-mini"')[1].split("</tr>")[0])
    assert '<td class="num">24</td>' in mini and "10,000 ms" in mini

    fragment = admin.get("/admin/health?window=day", headers=HX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="provider-health"')
    assert 'hx-get="/admin/health?window=day" hx-trigger="every 30s"' in fragment
    assert "anthropic is failing now" in fragment


def test_issue11_item5_the_page_is_404_to_customers_and_anonymous(app, make_account):
    make_account("customer@example.com")
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    for client in (app.test_client(), customer.client):
        assert client.get("/admin/health").status_code == 404
        assert client.get("/admin/health", headers=HX).status_code == 404


def test_issue11_item5_with_no_traffic_the_page_says_so(app, admin):
    html = admin.get("/admin/health").get_data(as_text=True)
    assert "No proxied request in the last 24 hours." in html
