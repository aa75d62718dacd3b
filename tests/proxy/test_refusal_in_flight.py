"""Revocation and suspension during traffic (issue 3, Tests): while a stream is in flight on a key,
the key is revoked (or its account suspended). The stream in flight runs to its end and is billed
exactly what the provider reported, settled exactly once; the very next request, in either web
process, is refused in its route's dialect (401 / 403) and reaches no provider; the ledger stays
consistent throughout."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors
from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey
from app.services import accounts
from app.services.keys import revoke_key
from app.services.money import credits_to_nanos
from tests.proxy.exact import (
    anthropic_client,
    assert_billed_exactly,
    genai_client,
    openai_client,
    settled_record,
)

START = "5"
START_NANOS = credits_to_nanos(START)
PROMPT = "Stream slowly please [[fake:slow=120 chunks=8 reasoning=3]]"
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated")


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch):
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        "app.services.accounts.generate_password_hash",
        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1"),
    )


def stream_pieces(route: str, model: str, server, key: str) -> Iterator[str]:
    """The text pieces of one streamed answer, read lazily through the official SDK."""
    if route == "chat":
        stream = openai_client(server, key).chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content
    elif route == "responses":
        with openai_client(server, key).responses.create(
            model=model, input=PROMPT, stream=True
        ) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    yield event.delta
    elif route == "messages":
        with anthropic_client(server, key).messages.stream(
            model=model, max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            yield from stream.text_stream
    else:
        with genai_client(server, key) as client:
            for chunk in client.models.generate_content_stream(model=model, contents=PROMPT):
                if chunk.text:
                    yield chunk.text


def next_request(route: str, model: str, server, key: str) -> None:
    """A plain request on the same route (raises the SDK's error when refused)."""
    prompt = "hello again"
    if route == "chat":
        openai_client(server, key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}]
        )
    elif route == "responses":
        openai_client(server, key).responses.create(model=model, input=prompt)
    elif route == "messages":
        anthropic_client(server, key).messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": prompt}]
        )
    else:
        with genai_client(server, key) as client:
            client.models.generate_content(model=model, contents=prompt)


# (status, OpenAI code, Anthropic type, Google status) from DESIGN.md's error table.
REFUSALS = {
    "revoke": (401, "invalid_api_key", "authentication_error", "UNAUTHENTICATED"),
    "suspend": (403, "account_suspended", "permission_error", "PERMISSION_DENIED"),
}


def assert_refused(route: str, error: BaseException, action: str) -> None:
    status, openai_code, anthropic_type, google_status = REFUSALS[action]
    if route in ("chat", "responses"):
        assert isinstance(error, openai.APIStatusError), error
        assert error.status_code == status
        assert error.body["code"] == openai_code
        headers = error.response.headers
    elif route == "messages":
        assert isinstance(error, anthropic.APIStatusError), error
        assert error.status_code == status
        assert error.body["type"] == "error"
        assert error.body["error"]["type"] == anthropic_type
        headers = error.response.headers
    else:
        assert isinstance(error, genai_errors.ClientError), error
        assert error.code == status
        assert error.status == google_status
        headers = error.response.headers
    assert headers.get("x-should-retry") == "false"


def act(app, action: str, account_id: int, key_id: int) -> None:
    with app.app_context():
        if action == "revoke":
            assert revoke_key(db.session.get(ApiKey, key_id))
        else:
            accounts.suspend(
                db.session.get(Account, account_id), reason="abuse report", actor_id=None
            )
        db.session.commit()
        db.session.remove()


ROUTES = [
    pytest.param("chat", "gpt-4o-mini", "openai", id="chat-openai"),
    pytest.param("chat", "grok-3-mini", "xai", id="chat-xai"),
    pytest.param("chat", "claude-haiku-4-5", "anthropic", id="chat-anthropic"),
    pytest.param("chat", "gemini-3.5-flash-lite", "gemini", id="chat-gemini"),
    pytest.param("responses", "gpt-5-mini", "openai", id="responses"),
    pytest.param("messages", "claude-haiku-4-5", "anthropic", id="messages"),
    pytest.param("gemini", "gemini-3.5-flash-lite", "gemini", id="gemini"),
]


@pytest.mark.parametrize("action", ["revoke", "suspend"])
@pytest.mark.parametrize(("route", "model", "provider"), ROUTES)
def test_stream_in_flight_finishes_and_bills_once_then_the_next_request_is_refused(
    app, live_server, fakes, funded_key, route, model, provider, action
):
    key, account_id, key_id = funded_key(START)
    pieces = stream_pieces(route, model, live_server, key)
    received = [next(pieces)]
    call = fakes.wait_for_calls(1, finished=False)[0]
    assert not call.finished  # the stream is in flight

    act(app, action, account_id, key_id)
    received += list(pieces)

    expected = f"Hello from {provider} chunk3 chunk4 chunk5 chunk6 chunk7"
    assert "".join(received) == expected  # the stream in flight ran to its end
    assert call.wait_finished(10) and call.completed
    record = settled_record(app, account_id, START_NANOS)
    assert record.streamed
    kind = "responses" if route == "responses" else "chat"
    cost = assert_billed_exactly(app, record, call, kind)
    assert cost > 0

    # The very next request is refused, in every web process, and reaches no provider.
    for _ in range(4):
        with pytest.raises((openai.APIError, anthropic.APIError, genai_errors.APIError)) as err:
            next_request(route, model, live_server, key)
        assert_refused(route, err.value, action)
    assert len(fakes.calls) == 1
    # Still the one record, the one debit, no hold open, invariants intact.
    again = settled_record(app, account_id, START_NANOS)
    assert (again.id, again.cost_nanocredits) == (record.id, cost)


def test_other_keys_of_a_revoked_keys_account_keep_working(app, live_server, fakes, funded_key):
    """Revoking one key in flight refuses that key only; the account's other key still works,
    and the account's ledger covers both requests exactly."""
    from tests.proxy.conftest import make_funded_key

    key, account_id, key_id = funded_key(START, email="two-keys@example.com")
    other, same_account, _ = make_funded_key(app, "0", email="two-keys@example.com")
    assert same_account == account_id
    pieces = stream_pieces("chat", "gpt-4o-mini", live_server, key)
    received = [next(pieces)]
    act(app, "revoke", account_id, key_id)
    received += list(pieces)
    assert "".join(received).startswith("Hello from openai")
    with pytest.raises(openai.AuthenticationError):
        next_request("chat", "gpt-4o-mini", live_server, key)
    next_request("chat", "gpt-4o-mini", live_server, other)
    with app.app_context():
        from app.models import UsageRecord
        from app.services.ledger import check_invariants

        records = db.session.scalars(
            select(UsageRecord).where(UsageRecord.account_id == account_id)
        ).all()
        assert sorted(r.status for r in records) == ["ok", "ok"]
        account = db.session.get(Account, account_id)
        assert account.held_nanocredits == 0
        assert account.balance_nanocredits == START_NANOS - sum(r.cost_nanocredits for r in records)
        assert check_invariants() == []
