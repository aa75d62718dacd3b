"""Bodies that used to crash the gateway (issue 9, finding 3) are a 400 in the route's dialect, with
nothing held, debited or sent upstream: nesting too deep for Python's JSON parser, nesting the
parser takes but the gateway's own encoding of the upstream body did not, and a lone surrogate."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, UsageRecord
from app.services.ledger import check_invariants

GEMINI = "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent"
DIALECTS = {
    "/v1/chat/completions": "openai",
    "/v1/responses": "openai",
    "/anthropic/v1/messages": "anthropic",
    "/anthropic/v1/messages/count_tokens": "anthropic",
    GEMINI: "google",
}
SCHEMA = "\x00schema\x00"  # replaced, in the encoded body, by a deeply nested JSON schema


def route_bodies(schema: object = SCHEMA, text: str = "hi") -> list[tuple[str, dict]]:
    """A valid request for every route and every provider behind /v1/chat/completions, with a
    function tool whose parameters are `schema` and a user message saying `text`."""
    chat_tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    anthropic_tool = {"name": "f", "input_schema": schema}
    bodies = [
        (
            "/v1/chat/completions",
            {
                "model": model,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": text}],
                "tools": [chat_tool],
            },
        )
        for model in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-3.5-flash-lite")
    ]
    bodies += [
        (
            "/v1/responses",
            {
                "model": "gpt-5-mini",
                "input": text,
                "tools": [{"type": "function", "name": "f", "parameters": schema}],
            },
        ),
        (
            "/anthropic/v1/messages",
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": text}],
                "tools": [anthropic_tool],
            },
        ),
        (
            "/anthropic/v1/messages/count_tokens",
            {
                "model": "claude-haiku-4-5",
                "messages": [{"role": "user", "content": text}],
                "tools": [anthropic_tool],
            },
        ),
        (
            GEMINI,
            {
                "contents": [{"role": "user", "parts": [{"text": text}]}],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}],
            },
        ),
    ]
    return bodies


def nested_schema(levels: int) -> str:
    """A JSON schema nested `levels` JSON levels deep (an object within `properties` within an
    object...), as text: building it as a dict would recurse too deep to encode here too."""
    pairs = levels // 2
    return '{"type": "object", "properties": {"x": ' * pairs + "{}" + "}}" * pairs


def post(server, path: str, raw: bytes, key: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(f"{server.url}{path}", headers=headers, data=raw, timeout=30)


def assert_400_in_dialect(path: str, response: requests.Response) -> dict:
    assert response.status_code == 400, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    dialect = DIALECTS[path]
    if dialect == "openai":
        assert body["error"]["code"] == "invalid_request"
    elif dialect == "anthropic":
        assert body == {"type": "error", "error": body["error"]}
        assert body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    return body


def assert_nothing_held_or_debited(app, account_id: int, credits: int) -> None:
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert (account.balance_nanocredits, account.held_nanocredits) == (credits * 10**9, 0)
        usage = db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.account_id == account_id)
        )
        assert usage == 0
        assert check_invariants() == []


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "valid key"])
@pytest.mark.parametrize("path", list(DIALECTS))
def test_nesting_too_deep_for_the_json_parser_is_a_400_in_the_dialect(
    app, live_server, fakes, funded_key, path, with_key
):
    key, account_id, _ = funded_key("1")
    raw = ("[" * 50_000 + "]" * 50_000).encode()
    assert_400_in_dialect(path, post(live_server, path, raw, key if with_key else None))
    assert fakes.calls == []
    assert_nothing_held_or_debited(app, account_id, 1)


@pytest.mark.parametrize("levels", [200, 990])
def test_deep_nesting_inside_tools_is_a_400_before_any_hold(
    app, live_server, fakes, funded_key, levels
):
    key, account_id, _ = funded_key("1")
    for path, body in route_bodies():
        raw = json.dumps(body).replace(json.dumps(SCHEMA), nested_schema(levels)).encode()
        answer = json.dumps(assert_400_in_dialect(path, post(live_server, path, raw, key)))
        # The gateway's own limit, or (for a Gemini model, whose translation is checked first)
        # the shallower one of Gemini's schema subset.
        assert "nested" in answer or "too deep" in answer, answer
    assert fakes.calls == []
    assert_nothing_held_or_debited(app, account_id, 1)


def test_nesting_within_the_limit_is_served(live_server, fakes, funded_key):
    """The limit leaves room for any real schema: 100 levels deep inside tools goes through."""
    key, _, _ = funded_key("1")
    for path, body in route_bodies():
        raw = json.dumps(body).replace(json.dumps(SCHEMA), nested_schema(100)).encode()
        response = post(live_server, path, raw, key)
        assert response.status_code == 200, (path, response.text[:500])


@pytest.mark.parametrize("encoding", ["escaped", "raw bytes"])
def test_a_lone_surrogate_in_content_is_a_400_in_the_dialect(
    app, live_server, fakes, funded_key, encoding
):
    key, account_id, _ = funded_key("1")
    for path, body in route_bodies(schema={"type": "object"}, text="hi \ud800 there"):
        if encoding == "escaped":
            raw = json.dumps(body).encode()
            assert b"\\ud800" in raw
        else:  # the surrogate's own three bytes, which Python's JSON decoder also takes
            raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
            assert b"\xed\xa0\x80" in raw
        answer = assert_400_in_dialect(path, post(live_server, path, raw, key))
        assert "surrogate" in json.dumps(answer), answer
    assert fakes.calls == []
    assert_nothing_held_or_debited(app, account_id, 1)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/anthropic/v1/messages"])
def test_a_lone_surrogate_in_the_model_name_is_not_found(app, live_server, funded_key, path):
    key, account_id, _ = funded_key("1")
    raw = json.dumps({"model": "gpt-\ud800", "max_tokens": 5, "messages": []}).encode()
    response = post(live_server, path, raw, key)
    assert response.status_code == 404, response.text[:500]
    assert_nothing_held_or_debited(app, account_id, 1)


@pytest.mark.parametrize("levels", [500, 50_000])
@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gemini-3.5-flash-lite"])
def test_deep_nesting_inside_tool_call_arguments_is_a_400_before_any_hold(
    app, live_server, fakes, funded_key, model, levels
):
    """A tool call's `arguments` is JSON inside a string: the translation to Anthropic and Gemini
    parses it and sends it on as an object, so its nesting counts too."""
    key, account_id, _ = funded_key("1")
    arguments = '{"a": ' * levels + "1" + "}" * levels
    body = {
        "model": model,
        "max_tokens": 16,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    path = "/v1/chat/completions"
    assert_400_in_dialect(path, post(live_server, path, json.dumps(body).encode(), key))
    assert fakes.calls == []
    assert_nothing_held_or_debited(app, account_id, 1)
