"""Under /v1, /anthropic and /gemini, a path or method the gateway does not serve is answered in the
route's dialect, as JSON an SDK can read, not with the site's HTML page (issue 9, finding 7)."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.proxy.conftest import LiveServer

GEMINI = "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/embeddings", 404, None),
        ("POST", "/v1/images/generations", 404, None),
        ("GET", "/v1", 404, None),
        ("GET", "/v1/", 404, None),
        ("GET", "/v1/chat/completions", 405, "POST"),
        ("PUT", "/v1/models", 405, "GET"),
        ("TRACE", "/v1/responses", 405, "POST"),
        ("GET", "/anthropic/v1/complete", 404, None),
        ("POST", "/anthropic", 404, None),
        ("DELETE", "/anthropic/v1/messages", 405, "POST"),
        ("POST", "/anthropic/v1/models", 405, "GET"),
        ("POST", "/gemini/v1beta/models", 404, None),
        ("GET", "/gemini/v1/models/gemini-3.5-flash-lite%0A", 404, None),
        ("GET", GEMINI, 405, "POST"),
        ("PATCH", GEMINI, 405, "POST"),
    ],
)
def test_unknown_paths_and_methods_are_answered_in_the_dialect(
    live_server, funded_key, method, path, status, allow
):
    key, _, _ = funded_key("1")
    response = requests.request(
        method, f"{live_server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers.get("Allow") == allow
    body = response.json()
    if path.startswith("/v1"):
        code = "not_found" if status == 404 else "method_not_allowed"
        assert body["error"]["code"] == code
        assert {"message", "type", "param"} <= set(body["error"])
    elif path.startswith("/anthropic"):
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        assert body == {
            "type": "error",
            "error": {"type": kind, "message": body["error"]["message"]},
        }
    else:
        assert body["error"]["code"] == status
        assert body["error"]["status"] == ("NOT_FOUND" if status == 404 else "UNIMPLEMENTED")


def test_other_paths_keep_the_site_pages(live_server):
    response = requests.get(f"{live_server.url}/v2/chat/completions", timeout=30)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


def test_the_sdks_read_an_unknown_route_as_their_own_not_found_error(live_server, funded_key):
    key, _, _ = funded_key("1")
    with pytest.raises(openai.NotFoundError) as raised:
        openai.OpenAI(
            base_url=f"{live_server.url}/v1", api_key=key, max_retries=0
        ).embeddings.create(model="text-embedding-3-small", input="hi")
    assert raised.value.code == "not_found"
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic.Anthropic(
            base_url=f"{live_server.url}/anthropic", api_key=key, max_retries=0
        ).models.retrieve("claude-haiku-4-5")
    assert raised.value.body["error"]["type"] == "not_found_error"
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=f"{live_server.url}/gemini")
    )
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.list()
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"


def test_an_unconfigured_provider_is_an_api_error_the_anthropic_sdk_does_not_retry(
    app, fakes, catalog
):
    """DESIGN.md's table said `overloaded_error`, which tells a client to come back soon; a
    provider the operator has not configured stays so. The SDK retries a 503 twice by default,
    unless `x-should-retry: false` says otherwise."""
    from tests.proxy.conftest import make_funded_key

    server = LiveServer(app, fakes, WEB_CONCURRENCY="1", ANTHROPIC_API_KEY="")
    server.start()
    try:
        key, _, _ = make_funded_key(app, "5")
        sent = []
        client = anthropic.Anthropic(
            base_url=f"{server.url}/anthropic",
            api_key=key,
            http_client=httpx2.Client(event_hooks={"request": [sent.append]}),
        )
        assert client.max_retries == 2
        for stream in (False, True):
            with pytest.raises(anthropic.ServiceUnavailableError) as raised:
                client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=10,
                    messages=[{"role": "user", "content": "hi"}],
                    stream=stream,
                )
            assert raised.value.body == {
                "type": "error",
                "error": {
                    "type": "api_error",
                    "message": "Anthropic is not available on this gateway.",
                },
            }
            assert raised.value.response.headers["x-should-retry"] == "false"
    finally:
        server.stop()
    assert len(sent) == 2  # one request for each call: no retry
    assert fakes.calls == []
