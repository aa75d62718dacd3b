"""Issue 10 item 5, refused calls are visible: every request the gateway refuses before calling a
provider (400, 401, 402, 403, 404, 429), made through the official SDKs, is listed on the owner's
/keys/refusals page under its key only, with its time, model, status, code and message; Redis
holds it in a capped list and per-day counts, written in one round trip, and nothing on success.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import anthropic
import openai
import pytest
import requests
from google.genai import errors as genai_errors
from sqlalchemy import update

from app.extensions import db
from app.models import Account, ApiKey
from app.models.types import utcnow
from app.proxy.refusals import REFUSALS_KEPT, list_name
from app.services import accounts
from tests.helpers import Browser
from tests.proxy.conftest import LiveServer
from tests.proxy.exact import anthropic_client, genai_client, openai_client

HI = [{"role": "user", "content": "hi"}]


def signed_in(app, email: str) -> Browser:
    browser = Browser(app.test_client())
    assert browser.login(email).status_code == 302
    return browser


def refusals_page(browser: Browser, key_id: int | None = None):
    return browser.get("/keys/refusals" + (f"?key={key_id}" if key_id else ""))


def listed(browser: Browser, key_id: int) -> list[dict]:
    """The rows of the key's refusals table, as text: when, status, code, message, model, route."""
    response = refusals_page(browser, key_id)
    assert response.status_code == 200
    body = response.get_data(as_text=True).partition('id="refusals-table"')[2]
    rows = []
    for row in re.findall(r"<tr>\s*<td class=\"when.*?</tr>", body, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", " ", c)).split() for c in row.split("</td>")]
        rows.append(
            {
                "when": " ".join(cells[0]),
                "status": int(cells[1][0]),
                "code": cells[2][0],
                "text": " ".join(cells[2][1:]),
                "model": " ".join(cells[3]),
                "route": " ".join(cells[4]),
            }
        )
    return rows


def gemini_generate(server, key: str, model: str = "gemini-2.5-flash"):
    client = genai_client(server, key)  # held: the client closes when collected
    return client.models.generate_content(model=model, contents="hi")


def update_key(app, key_id: int, **values) -> None:
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))
        db.session.commit()


def test_each_refusal_kind_is_listed_with_its_code_and_message_for_its_key_only(
    app, live_server, funded_key
):
    email = "debugging@example.com"
    unknown, _, unknown_id = funded_key("0.01", email=email)
    narrow, _, narrow_id = funded_key("0", email=email, allowed_models=["claude-haiku-4-5"])
    limited, _, limited_id = funded_key("0", email=email, limit_nanocredits=1000)
    slow, _, slow_id = funded_key("0", email=email)
    bad, _, bad_id = funded_key("0", email=email)
    revoked, _, revoked_id = funded_key("0", email=email)
    expired, _, expired_id = funded_key("0", email=email)
    poor, _, poor_id = funded_key("0", email=email)
    _, _, clean_id = funded_key("0", email=email)
    update_key(app, slow_id, rate_limit_rpm=1)

    with pytest.raises(openai.NotFoundError):
        openai_client(live_server, unknown).chat.completions.create(model="gpt-99", messages=HI)
    with pytest.raises(genai_errors.ClientError) as denied:
        gemini_generate(live_server, narrow)
    assert denied.value.code == 403
    with pytest.raises(openai.APIStatusError) as over_limit:
        openai_client(live_server, limited).chat.completions.create(
            model="gpt-4o-mini", messages=HI, max_completion_tokens=1000
        )
    assert over_limit.value.status_code == 402
    with pytest.raises(anthropic.APIStatusError) as too_poor:
        anthropic_client(live_server, poor).messages.create(
            model="claude-opus-4-1", max_tokens=32_000, messages=HI
        )
    assert too_poor.value.status_code == 402
    # One request a minute: of three, at least the last two share a minute.
    with pytest.raises(openai.RateLimitError):
        for _ in range(3):
            openai_client(live_server, slow).chat.completions.create(
                model="gpt-4o-mini", messages=HI, max_completion_tokens=5
            )
    secret_tool = "lookup_customer_ledger_7f3a"
    with pytest.raises(openai.BadRequestError):
        openai_client(live_server, bad).chat.completions.create(
            model="claude-haiku-4-5",
            messages=HI,
            tools=[{"type": "function", "function": {"name": "lookup"}}],
            tool_choice={"type": "function", "function": {"name": secret_tool}},
        )
    update_key(app, revoked_id, revoked_at=utcnow())
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(live_server, revoked).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=HI
        )
    update_key(app, expired_id, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(genai_errors.ClientError) as gone:
        gemini_generate(live_server, expired)
    assert gone.value.code == 401

    expected = {
        unknown_id: (404, "model_not_found", "The model 'gpt-99' does not exist", "gpt-99"),
        narrow_id: (
            403,
            "model_not_allowed",
            "This API key may not use 'gemini-2.5-flash'.",
            "gemini-2.5-flash",
        ),
        limited_id: (402, "key_limit_reached", "under this key's limit", "gpt-4o-mini"),
        poor_id: (402, "insufficient_credits", "more credit than is available", "claude-opus-4-1"),
        slow_id: (429, "rate_limited", "Too many requests for this API key", "gpt-4o-mini"),
        bad_id: (400, "invalid_request", "Invalid parameter 'tool_choice'.", "claude-haiku-4-5"),
        revoked_id: (401, "invalid_api_key", "revoked or expired", "claude-haiku-4-5"),
        expired_id: (401, "invalid_api_key", "revoked or expired", "gemini-2.5-flash"),
    }
    routes = {
        narrow_id: "POST /gemini/v1beta/models/gemini-2.5-flash:generateContent",
        expired_id: "POST /gemini/v1beta/models/gemini-2.5-flash:generateContent",
        poor_id: "POST /anthropic/v1/messages",
        revoked_id: "POST /anthropic/v1/messages",
    }
    browser = signed_in(app, email)
    for key_id, (status, code, message, model) in expected.items():
        rows = listed(browser, key_id)
        assert {(r["status"], r["code"]) for r in rows} == {(status, code)}, (key_id, rows)
        assert all(message in r["text"] and r["model"] == model for r in rows), rows
        assert rows[0]["route"].startswith(routes.get(key_id, "POST /v1/chat/completions"))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0]["when"])
    assert len(listed(browser, slow_id)) == 1  # the loop stopped at the first 429
    page = refusals_page(browser, clean_id).get_data(as_text=True)
    assert 'id="no-refusals"' in page
    # A 400's message may quote the request (here a tool's name): only its parameter is kept.
    redis = app.extensions["onekey_redis"]
    stored = b"".join(redis.lrange(list_name(bad_id), 0, -1)).decode()
    assert json.loads(stored)["param"] == "tool_choice"
    assert secret_tool not in stored

    # The suspended account's refusals are listed too: it can still sign in and look.
    other = "suspended@example.com"
    suspended, account_id, suspended_id = funded_key("1", email=other)
    with app.app_context():
        accounts.suspend(db.session.get(Account, account_id), reason="abuse", actor_id=None)
        db.session.commit()
    with pytest.raises(openai.PermissionDeniedError):
        openai_client(live_server, suspended).chat.completions.create(
            model="gpt-4o-mini", messages=HI
        )
    rows = listed(signed_in(app, other), suspended_id)
    assert [(r["status"], r["code"]) for r in rows] == [(403, "account_suspended")]
    assert "This account is suspended." in rows[0]["text"]


def test_success_path_records_nothing(app, live_server, funded_key):
    key, _, key_id = funded_key("5", email="happy@example.com")
    openai_client(live_server, key).chat.completions.create(model="gpt-4o-mini", messages=HI)
    anthropic_client(live_server, key).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=HI
    )
    gemini_generate(live_server, key)
    redis = app.extensions["onekey_redis"]
    assert list(redis.scan_iter(match="onekey:refusals:*")) == []
    page = refusals_page(signed_in(app, "happy@example.com"), key_id).get_data(as_text=True)
    assert 'id="no-refusals"' in page


def test_ring_buffer_keeps_the_newest_refusals_and_counts_them_all(app, live_server, funded_key):
    key, _, key_id = funded_key("1", email="many@example.com")
    client = openai_client(live_server, key)
    for n in range(REFUSALS_KEPT + 10):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=f"gpt-missing-{n}", messages=HI)
    redis = app.extensions["onekey_redis"]
    assert redis.llen(list_name(key_id)) == REFUSALS_KEPT
    assert 0 < redis.ttl(list_name(key_id)) <= 7 * 86400
    browser = signed_in(app, "many@example.com")
    rows = listed(browser, key_id)
    assert len(rows) == REFUSALS_KEPT
    assert rows[0]["model"] == f"gpt-missing-{REFUSALS_KEPT + 9}"  # newest first
    assert rows[-1]["model"] == "gpt-missing-10"
    page = refusals_page(browser, key_id).get_data(as_text=True)
    counts = page.partition('id="refusal-counts"')[2].partition("</table>")[0]
    assert re.search(r'<td class="num">\s*60\s*</td>', counts), counts


def test_another_customers_key_and_refusals_are_not_visible(app, live_server, funded_key):
    key, _, key_id = funded_key("1", email="owner@example.com")
    funded_key("1", email="neighbour@example.com")
    with pytest.raises(openai.NotFoundError):
        openai_client(live_server, key).chat.completions.create(
            model="gpt-owners-secret-model", messages=HI
        )
    assert len(listed(signed_in(app, "owner@example.com"), key_id)) == 1
    neighbour = signed_in(app, "neighbour@example.com")
    response = refusals_page(neighbour, key_id)
    assert response.status_code == 404
    assert "gpt-owners-secret-model" not in response.get_data(as_text=True)
    # Their own page lists only their key.
    page = refusals_page(neighbour).get_data(as_text=True)
    assert "gpt-owners-secret-model" not in page and f'value="{key_id}"' not in page


def test_redis_down_while_recording_still_answers(app, fakes, catalog, funded_key):
    key, _, _ = funded_key("1")
    server = LiveServer(app, fakes, REDIS_URL="redis://127.0.0.1:1/0")
    server.start()
    try:
        with pytest.raises(openai.NotFoundError) as missing:
            openai_client(server, key).chat.completions.create(model="gpt-99", messages=HI)
        with pytest.raises(anthropic.BadRequestError) as invalid:
            anthropic_client(server, key).messages.create(
                model="claude-haiku-4-5", max_tokens=-1, messages=HI
            )
        # Unaffected answers: the same status, code and message as with Redis up.
        plain = requests.post(
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-99", "messages": HI},
            timeout=30,
        )
    finally:
        server.stop()
    assert missing.value.status_code == 404 and missing.value.code == "model_not_found"
    assert invalid.value.status_code == 400
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "model_not_found"
    assert "refusal not recorded, Redis did not answer" in server.logs()
