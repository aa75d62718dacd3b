"""Issue 10 item 9 at the proxy: a paused key is refused in every dialect without touching credit
and works again once resumed; a key's edits apply on the very next request in every process,
whatever the per-process key cache holds; a limit that resets rolls over at midnight UTC, once,
however many requests race at the boundary; /v1/key reports it all.

The live server is its own process, so its clock cannot be moved: the tests move the key's
stored period and its holds a day (or more) into the past instead, which is the state the
database would be in had those requests been made then.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, ApiKey, Hold, UsageRecord
from app.models.types import utcnow
from app.services import keys as key_service
from app.services.key_periods import period_start
from app.services.ledger import check_invariants
from app.services.money import credits_to_nanos, nanos_to_credits
from tests.proxy.billing import open_holds, wait_for_settlement

PROMPT = [{"role": "user", "content": "hi"}]
# The live server runs two workers; a few requests in a row reach both.
REQUESTS_PER_CHECK = 6


def chat(server, key: str, content: str = "hi", max_tokens: int = 5) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
        },
        timeout=30,
    )


def key_info(server, key: str) -> dict:
    response = requests.get(
        f"{server.url}/v1/key", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def money(app, account_id: int, key_id: int) -> tuple:
    """(balance, held, key usage, key held, usage records): what a refusal must not change."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        key = db.session.get(ApiKey, key_id)
        records = db.session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.api_key_id == key_id)
        )
        result = (
            account.balance_nanocredits,
            account.held_nanocredits,
            key.usage_nanocredits,
            key.held_nanocredits,
            records,
        )
        db.session.remove()
        return result


def edit_key(app, key_id: int, **changes) -> None:
    """Change the key through the service, as the portal does, keeping the other fields."""
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        fields = {
            "name": key.name,
            "limit_nanocredits": key.limit_nanocredits,
            "limit_reset": key.limit_reset,
            "allowed_models": key.allowed_models,
            "expires_at": key.expires_at,
            **changes,
        }
        key_service.update_key(key, **fields)
        db.session.commit()


def set_paused(app, key_id: int, paused: bool) -> None:
    with app.app_context():
        assert key_service.set_paused(db.session.get(ApiKey, key_id), paused)
        db.session.commit()


def as_if_days_passed(app, key_id: int, days: int = 1) -> None:
    """Move the key's stored period and everything its holds and usage records say happened
    `days` into the past: the state the rows would be in had it all happened then."""
    shift = timedelta(days=days)
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        if key.period_started_at is not None:
            key.period_started_at = period_start(key.limit_reset, key.period_started_at - shift)
        for hold in db.session.scalars(select(Hold).where(Hold.api_key_id == key_id)):
            hold.created_at -= shift
            if hold.closed_at is not None:
                hold.closed_at -= shift
        for record in db.session.scalars(
            select(UsageRecord).where(UsageRecord.api_key_id == key_id)
        ):
            record.created_at -= shift
        db.session.commit()


def period_spend(app, key_id: int) -> tuple[int, int]:
    """(what the key's row counts as this period's spend, what its holds settled since the
    period began): equal when the period rolled over exactly once."""
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        now = utcnow()
        settled = db.session.scalar(
            select(func.coalesce(func.sum(Hold.settled_amount_nanocredits), 0)).where(
                Hold.api_key_id == key_id,
                Hold.status == "settled",
                Hold.closed_at >= period_start(key.limit_reset, now),
            )
        )
        result = key.period_usage_at(now), int(settled)
        db.session.remove()
        return result


# --- pause and resume ------------------------------------------------------------------------


def every_dialect(server, key: str) -> dict:
    """One call per dialect's metered or keyed route, with the official SDKs: name -> the
    exception raised, or None when it succeeded."""
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    ant = anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key=key, max_retries=0)
    gem = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=f"{server.url}/gemini", api_version="v1beta"),
    )
    calls = {
        "chat": lambda: oai.chat.completions.create(
            model="claude-haiku-4-5", messages=PROMPT, max_tokens=5
        ),
        "responses": lambda: oai.responses.create(model="gpt-5-mini", input="hi"),
        "messages": lambda: ant.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=PROMPT
        ),
        "count_tokens": lambda: ant.messages.count_tokens(
            model="claude-haiku-4-5", messages=PROMPT
        ),
        "gemini": lambda: gem.models.generate_content(model="gemini-3.5-flash-lite", contents="hi"),
    }
    outcomes = {}
    for name, call in calls.items():
        try:
            call()
            outcomes[name] = None
        except (openai.APIError, anthropic.APIError, genai_errors.APIError) as error:
            outcomes[name] = error
    return outcomes


def test_issue10_9_a_paused_key_is_refused_in_every_dialect_and_resuming_restores_it(
    app, live_server, fakes, funded_key
):
    key, account_id, key_id = funded_key("5")
    assert all(outcome is None for outcome in every_dialect(live_server, key).values())
    wait_for_settlement(app, account_id)
    fakes.reset()
    set_paused(app, key_id, True)
    before = money(app, account_id, key_id)

    for _ in range(2):  # both workers, each with the key in its cache
        refused = every_dialect(live_server, key)
        for name in ("chat", "responses"):
            error = refused[name]
            assert isinstance(error, openai.PermissionDeniedError), (name, error)
            assert error.body["code"] == "key_paused"
            assert "paused" in error.body["message"]
            assert error.response.headers["x-should-retry"] == "false"
        for name in ("messages", "count_tokens"):
            error = refused[name]
            assert isinstance(error, anthropic.PermissionDeniedError), (name, error)
            assert error.body["error"]["type"] == "permission_error"
            assert "paused" in error.body["error"]["message"]
        error = refused["gemini"]
        assert isinstance(error, genai_errors.ClientError), error
        assert (error.code, error.status) == (403, "PERMISSION_DENIED")
        assert "paused" in error.message
    assert fakes.calls == []  # nothing reached a provider
    assert money(app, account_id, key_id) == before
    assert open_holds(app) == 0
    # /v1/key still answers, so the owner's tools can tell why.
    assert key_info(live_server, key)["disabled"] is True

    set_paused(app, key_id, False)
    for _ in range(2):
        assert all(outcome is None for outcome in every_dialect(live_server, key).values())
    assert key_info(live_server, key)["disabled"] is False
    wait_for_settlement(app, account_id)
    with app.app_context():
        assert check_invariants() == []


# --- edits and the cached authority ----------------------------------------------------------


def test_issue10_9_edits_apply_on_the_next_request_despite_the_cached_key(
    app, live_server, funded_key
):
    key, _, key_id = funded_key("5")
    for _ in range(REQUESTS_PER_CHECK):
        assert chat(live_server, key).status_code == 200

    edit_key(app, key_id, allowed_models=["claude-haiku-4-5"])
    for _ in range(REQUESTS_PER_CHECK):
        response = chat(live_server, key)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "model_not_allowed"

    edit_key(app, key_id, allowed_models=["gpt-4o-mini"], limit_nanocredits=1000)
    for _ in range(REQUESTS_PER_CHECK):
        response = chat(live_server, key)
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "key_limit_reached"

    edit_key(app, key_id, limit_nanocredits=None, name="renamed")
    for _ in range(REQUESTS_PER_CHECK):
        assert chat(live_server, key).status_code == 200
    assert key_info(live_server, key)["name"] == "renamed"
    assert open_holds(app) == 0


def test_issue10_9_an_expired_key_given_a_later_expiry_works_at_once(app, live_server, funded_key):
    key, _, key_id = funded_key("5", expires_at=utcnow() + timedelta(days=1))
    for _ in range(REQUESTS_PER_CHECK):
        assert chat(live_server, key).status_code == 200
    with app.app_context():
        db.session.get(ApiKey, key_id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    for _ in range(REQUESTS_PER_CHECK):
        assert chat(live_server, key).status_code == 401
    edit_key(app, key_id, expires_at=utcnow() + timedelta(days=30))
    for _ in range(REQUESTS_PER_CHECK):
        assert chat(live_server, key).status_code == 200


# --- limits that reset -----------------------------------------------------------------------

# About two holds' worth of a short gpt-4o-mini request: a handful of them spend it.
SMALL_LIMIT = 50_000


def spend_the_limit(server, key: str) -> int:
    """Make requests until the key's limit refuses one; returns how many succeeded."""
    for succeeded in range(40):
        response = chat(server, key)
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "key_limit_reached"
            return succeeded
        assert response.status_code == 200, response.text
    raise AssertionError("the limit never refused a request")


def test_issue10_9_a_daily_limit_applies_again_after_midnight_utc(app, live_server, funded_key):
    key, account_id, key_id = funded_key("5", limit_nanocredits=SMALL_LIMIT, limit_reset="daily")
    assert spend_the_limit(live_server, key) >= 2
    yesterday = money(app, account_id, key_id)[2]
    as_if_days_passed(app, key_id)
    # A new day: the limit counts nothing yet; the lifetime spend is kept.
    info = key_info(live_server, key)
    assert info["limit_remaining"] == nanos_to_credits(SMALL_LIMIT)
    assert info["usage"] == nanos_to_credits(yesterday) and info["usage_daily"] == "0"
    assert spend_the_limit(live_server, key) >= 2
    usage_now = money(app, account_id, key_id)[2]
    with app.app_context():
        key_row = db.session.get(ApiKey, key_id)
        assert key_row.period_started_at == period_start("daily", utcnow())
        assert key_row.period_usage_base_nanocredits == yesterday
    today = usage_now - yesterday
    assert period_spend(app, key_id) == (today, today)
    assert 0 < today <= SMALL_LIMIT
    info = key_info(live_server, key)
    assert info["usage"] == nanos_to_credits(usage_now)
    assert info["usage_daily"] == nanos_to_credits(today)
    assert info["limit_remaining"] == nanos_to_credits(SMALL_LIMIT - today)
    with app.app_context():
        assert check_invariants() == []


def test_issue10_9_concurrent_requests_at_the_boundary_roll_the_period_once(
    app, live_server, funded_key
):
    key, _, key_id = funded_key("5", limit_nanocredits=SMALL_LIMIT, limit_reset="daily")
    spend_the_limit(live_server, key)
    as_if_days_passed(app, key_id)
    # Every request below finds the stored period over; they race to be first in the new one.
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def request() -> None:
        barrier.wait(timeout=10)
        statuses.append(chat(live_server, key).status_code)

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(statuses) == 12 and set(statuses) <= {200, 402}, statuses
    assert 200 in statuses
    assert open_holds(app) == 0
    spent, settled_today = period_spend(app, key_id)
    # Rolled over exactly once: a second roll would have dropped an earlier cost of today.
    assert spent == settled_today > 0
    assert spent <= SMALL_LIMIT
    with app.app_context():
        assert check_invariants() == []


def test_issue10_9_a_request_held_before_midnight_and_settled_after_counts_once(
    app, live_server, funded_key
):
    key, account_id, key_id = funded_key(
        "5", limit_nanocredits=credits_to_nanos("1"), limit_reset="daily"
    )
    assert chat(live_server, key).status_code == 200
    before = money(app, account_id, key_id)[2]
    replies: list[requests.Response] = []
    slow = threading.Thread(
        target=lambda: replies.append(
            requests.post(
                f"{live_server.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "hi [[fake:slow=400 chunks=5]]"}],
                    "max_tokens": 50,
                    "stream": True,
                },
                timeout=30,
            )
        )
    )
    slow.start()
    deadline = time.monotonic() + 10
    while open_holds(app) == 0:
        assert time.monotonic() < deadline, "the request placed no hold"
        time.sleep(0.02)
    # Midnight passes while it streams: the hold was placed "yesterday".
    as_if_days_passed(app, key_id)
    with app.app_context():
        held = db.session.get(ApiKey, key_id).held_nanocredits
    assert held > 0
    info = key_info(live_server, key)
    assert info["usage_daily"] == "0"
    # Still open, it counts against the new day's limit as held.
    assert info["limit_remaining"] == nanos_to_credits(credits_to_nanos("1") - held)
    slow.join(timeout=30)
    assert replies and replies[0].status_code == 200
    wait_for_settlement(app, account_id)
    after = money(app, account_id, key_id)[2]
    cost = after - before
    assert cost > 0
    # Settled "today": counted in today's spend, once, and in the lifetime spend, once.
    assert period_spend(app, key_id) == (cost, cost)
    info = key_info(live_server, key)
    assert info["usage"] == nanos_to_credits(after)
    assert info["usage_daily"] == nanos_to_credits(cost)
    assert info["limit_remaining"] == nanos_to_credits(credits_to_nanos("1") - cost)
    with app.app_context():
        assert check_invariants() == []


# --- /v1/key ---------------------------------------------------------------------------------


def test_issue10_9_v1_key_reports_limit_reset_and_usage_like_openrouter(
    app, live_server, funded_key
):
    expiry = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    key, account_id, key_id = funded_key(
        "5",
        limit_nanocredits=credits_to_nanos("2"),
        limit_reset="weekly",
        expires_at=expiry,
    )
    for _ in range(3):
        assert chat(live_server, key).status_code == 200
    # One of the three was made 40 days ago: before this month, week and day.
    with app.app_context():
        old = db.session.scalar(
            select(Hold).where(Hold.api_key_id == key_id).order_by(Hold.id).limit(1)
        )
        old.created_at -= timedelta(days=40)
        old.closed_at -= timedelta(days=40)
        old_cost = old.settled_amount_nanocredits
        key_row = db.session.get(ApiKey, key_id)
        key_row.period_usage_base_nanocredits = old_cost  # as the weekly roll would have left it
        db.session.commit()
    usage = money(app, account_id, key_id)[2]
    recent = usage - old_cost
    data = key_info(live_server, key)
    assert data == {
        "name": "test",
        "label": f"ok-…{key[-4:]}",
        "balance": nanos_to_credits(credits_to_nanos("5") - usage),
        "held": "0",
        "usage": nanos_to_credits(usage),
        "usage_daily": nanos_to_credits(recent),
        "usage_weekly": nanos_to_credits(recent),
        "usage_monthly": nanos_to_credits(recent),
        "limit": "2",
        "limit_remaining": nanos_to_credits(credits_to_nanos("2") - recent),
        "limit_reset": "weekly",
        "expires_at": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "disabled": False,
    }

    plain, _, _ = funded_key("1")
    data = key_info(live_server, plain)
    assert (data["limit"], data["limit_remaining"], data["limit_reset"]) == (None, None, None)
    assert data["expires_at"] is None and data["usage_monthly"] == "0"


@pytest.mark.parametrize("reset", ["daily", "weekly", "monthly"])
def test_issue10_9_each_reset_period_starts_at_midnight_utc(reset):
    from datetime import UTC, datetime

    from app.services.key_periods import next_period_start

    moment = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday
    expected = {
        "daily": (datetime(2026, 12, 9, tzinfo=UTC), datetime(2026, 12, 10, tzinfo=UTC)),
        "weekly": (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 14, tzinfo=UTC)),
        "monthly": (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    }[reset]
    assert (period_start(reset, moment), next_period_start(reset, moment)) == expected
    assert period_start(reset, expected[0]) == expected[0]
    assert period_start(reset, expected[1] - timedelta(microseconds=1)) == expected[0]
