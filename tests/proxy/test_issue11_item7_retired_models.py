"""Issue 11 item 7, through the official SDKs: a model `retire_due_models` retired is refused on the
very next request in every gateway process, even one that had it cached, with a 404 naming the
retirement and the replacement; nothing is held, nothing reaches the provider, nothing is billed."""

from __future__ import annotations

from datetime import date

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Hold, LedgerEntry, UsageRecord
from app.services.catalog import retire_due_models
from app.services.ledger import check_invariants
from tests.proxy.billing import open_holds, wait_for_settlement

# The live server runs two workers; a few requests in a row reach both.
REQUESTS_PER_CHECK = 6
MESSAGES = [{"role": "user", "content": "hi"}]


def retire(app, today: date) -> list[str]:
    with app.app_context():
        retired = retire_due_models(today)
        db.session.commit()
    return retired


def money_state(app, account_id: int) -> tuple:
    """Everything a request could have held or billed on the account."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        return (
            account.balance_nanocredits,
            account.held_nanocredits,
            db.session.scalar(
                select(func.count()).select_from(Hold).where(Hold.account_id == account_id)
            ),
            db.session.scalar(
                select(func.count())
                .select_from(UsageRecord)
                .where(UsageRecord.account_id == account_id)
            ),
            db.session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.account_id == account_id)
            ),
        )


def test_issue11_item7_openai_sdk_a_retired_model_is_refused_even_when_cached(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    for _ in range(REQUESTS_PER_CHECK):  # both workers have gpt-5 cached
        reply = client.chat.completions.create(model="gpt-5", messages=MESSAGES)
        assert reply.choices[0].message.content == "Hello from openai"
    fakes.wait_for_calls(REQUESTS_PER_CHECK)
    wait_for_settlement(app, account_id)
    served = len(fakes.calls_for())
    before = money_state(app, account_id)
    assert before[3] == REQUESTS_PER_CHECK  # the usage records of the served requests

    assert retire(app, date(2026, 12, 11)) == ["gpt-5", "gpt-5-mini", "gpt-5-nano", "o3"]

    message = (
        "The model 'gpt-5' was retired by its provider on 2026-12-11; use 'gpt-6.1-sol' instead."
    )
    for _ in range(REQUESTS_PER_CHECK):
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model="gpt-5", messages=MESSAGES)
        assert refused.value.status_code == 404
        assert refused.value.code == "model_not_found"
        assert refused.value.body["message"] == message
        assert refused.value.response.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError) as streamed:
        list(client.chat.completions.create(model="gpt-5", messages=MESSAGES, stream=True))
    assert streamed.value.body["message"] == message
    with pytest.raises(openai.NotFoundError) as responses:
        client.responses.create(model="openai/o3", input="hi")
    assert responses.value.body["message"] == (
        "The model 'openai/o3' was retired by its provider on 2026-12-11; use 'gpt-6.1-sol' instead."
    )
    # The replacement is sold.
    reply = client.chat.completions.create(model="gpt-6.1-sol", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from openai"
    fakes.wait_for_calls(served + 1)
    wait_for_settlement(app, account_id)

    # Only the replacement's request reached the provider, held and billed.
    assert len(fakes.calls_for()) == served + 1
    assert fakes.calls_for()[-1].body["model"] == "gpt-6.1-sol"
    after = money_state(app, account_id)
    assert after[2:] == (before[2] + 1, before[3] + 1, before[4] + 1)
    assert after[1] == 0 and open_holds(app) == 0
    with app.app_context():
        assert check_invariants() == []

    listed = requests.get(f"{live_server.url}/v1/models", timeout=10).json()["data"]
    ids = {m["id"] for m in listed}
    assert "gpt-5" not in ids and "o3" not in ids and "gpt-6.1-sol" in ids


# The SDK warns of the model's coming end of life: that is the date being tested.
@pytest.mark.filterwarnings("ignore:The model 'claude-opus-4-5' is deprecated:DeprecationWarning")
def test_issue11_item7_anthropic_sdk_a_retired_model_is_refused_with_its_replacement(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    client = anthropic.Anthropic(
        base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
    )
    request = {"model": "claude-opus-4-5", "max_tokens": 16, "messages": MESSAGES}
    for _ in range(REQUESTS_PER_CHECK):
        assert client.messages.create(**request).content[0].text == "Hello from anthropic"
    fakes.wait_for_calls(REQUESTS_PER_CHECK)
    wait_for_settlement(app, account_id)
    before = money_state(app, account_id)

    assert "claude-opus-4-5" in retire(app, date(2027, 1, 22))

    message = (
        "The model 'claude-opus-4-5' was retired by its provider on 2027-01-22; "
        "use 'claude-opus-5-5' instead."
    )
    for stream in [False] * REQUESTS_PER_CHECK + [True]:
        with pytest.raises(anthropic.NotFoundError) as refused:
            if stream:
                with client.messages.stream(**request) as events:
                    list(events)
            else:
                client.messages.create(**request)
        assert refused.value.status_code == 404
        assert refused.value.body["error"] == {"type": "not_found_error", "message": message}
    with pytest.raises(anthropic.NotFoundError) as counted:
        client.messages.count_tokens(model="claude-opus-4-5", messages=MESSAGES)
    assert counted.value.body["error"]["message"] == message
    assert len(fakes.calls_for()) == REQUESTS_PER_CHECK
    assert money_state(app, account_id) == before
    assert open_holds(app) == 0


def test_issue11_item7_gemini_sdk_a_retired_and_an_unknown_model(live_server, fakes, funded_key):
    key, _, _ = funded_key("5")
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=f"{live_server.url}/gemini", api_version="v1beta"),
    )
    # Retired by the bundled file, without a date.
    with pytest.raises(genai_errors.ClientError) as refused:
        client.models.generate_content(model="gemini-2.5-pro", contents="hi")
    assert refused.value.code == 404 and refused.value.status == "NOT_FOUND"
    assert refused.value.message == (
        "The model 'gemini-2.5-pro' was retired by its provider; use 'gemini-3.1-pro-preview' "
        "instead."
    )
    with pytest.raises(genai_errors.ClientError) as unknown:
        client.models.generate_content(model="gemini-9", contents="hi")
    assert unknown.value.message == "The model 'gemini-9' does not exist or is not enabled."
    assert fakes.calls_for() == []
