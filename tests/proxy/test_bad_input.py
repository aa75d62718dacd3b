"""Bad input gets a 4xx in the route's dialect and changes nothing; never a 5xx."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Account
from app.services.ledger import check_invariants

ROUTES = {
    "/v1/chat/completions": ("openai", "gpt-4o-mini"),
    "/v1/responses": ("openai", "gpt-5-mini"),
    "/anthropic/v1/messages": ("anthropic", "claude-haiku-4-5"),
    "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent": (
        "google",
        "gemini-3.5-flash-lite",
    ),
    "/gemini/v1/models/gemini-3.5-flash-lite:streamGenerateContent": (
        "google",
        "gemini-3.5-flash-lite",
    ),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "model",
        "messages",
        "input",
        "contents",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "tools",
        "tool_choice",
        "temperature",
        "stop",
        "generationConfig",
        "system",
        "response_format",
        "stream_options",
        "background",
        "max_output_tokens",
        "metadata",
    ]
)
bodies = st.dictionaries(field_names, json_values, max_size=6)


def assert_dialect(route: str, response: requests.Response) -> None:
    dialect = ROUTES[route][0]
    body = response.json()
    if dialect == "openai":
        assert set(body["error"]) >= {"message", "type", "code", "param"}
    elif dialect == "anthropic":
        assert body["type"] == "error" and {"type", "message"} <= set(body["error"])
    else:
        assert {"code", "message", "status"} <= set(body["error"])


@pytest.fixture
def caller(app, live_server, funded_key):
    key, account_id, _ = funded_key("1")
    return key, account_id


@pytest.mark.parametrize("route", list(ROUTES))
def test_malformed_bodies_get_a_4xx_in_dialect(app, live_server, caller, route):
    key, account_id = caller

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, with_model=st.booleans())
    def check(body, with_model):
        if with_model and "model" not in body:
            body = {**body, "model": ROUTES[route][1]}
        response = requests.post(
            f"{live_server.url}{route}",
            headers={"Authorization": f"Bearer {key}", "x-goog-api-key": key},
            data=json.dumps(body),
            timeout=30,
        )
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert_dialect(route, response)

    check()
    with app.app_context():
        assert check_invariants() == []
        assert db.session.get(Account, account_id).held_nanocredits == 0


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1, 2]", b'"text"', b"{", b"\xff\xfe", b'{"model": 5}']
)
def test_unparseable_bodies(live_server, caller, route, raw):
    key, _ = caller
    response = requests.post(
        f"{live_server.url}{route}",
        headers={"Authorization": f"Bearer {key}"},
        data=raw,
        timeout=30,
    )
    assert 400 <= response.status_code < 500
    assert_dialect(route, response)


@pytest.mark.parametrize("route", list(ROUTES))
def test_oversized_body_is_413(live_server, caller, route):
    key, _ = caller
    response = requests.post(
        f"{live_server.url}{route}",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=b'{"x": "' + b"a" * (21 * 1024 * 1024) + b'"}',
        timeout=60,
    )
    assert response.status_code == 413
    assert_dialect(route, response)


def test_background_responses_are_refused(live_server, caller):
    key, _ = caller
    response = requests.post(
        f"{live_server.url}/v1/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-5-mini", "input": "hi", "background": True},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "background"


def test_model_of_another_provider_on_a_native_route_is_400(live_server, caller):
    key, _ = caller
    response = requests.post(
        f"{live_server.url}/gemini/v1beta/models/gpt-4o-mini:generateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
