"""Every request body is bounded before it is read (issue 9, findings 2 and 4), against gunicorn:
`MAX_REQUEST_BYTES` on the proxy's routes, `MAX_FORM_BYTES` on every other (pages, webhooks);
with or without `Content-Length`, and a body over the limit is refused, never truncated."""

from __future__ import annotations

import http.client
import json

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, StripeEvent, UsageRecord
from tests.proxy.conftest import LiveServer

LIMIT = 64 * 1024
FORM_LIMIT = 16 * 1024
GEMINI = "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent"
ROUTES = {
    "/v1/chat/completions": lambda text: {
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
    },
    "/v1/responses": lambda text: {"model": "gpt-5-mini", "input": text},
    "/anthropic/v1/messages": lambda text: {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
    },
    "/anthropic/v1/messages/count_tokens": lambda text: {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": text}],
    },
    GEMINI: lambda text: {"contents": [{"role": "user", "parts": [{"text": text}]}]},
}


@pytest.fixture(scope="module")
def small_limits_server(app, fakes):
    server = LiveServer(
        app,
        fakes,
        WEB_CONCURRENCY="1",
        MAX_REQUEST_BYTES=str(LIMIT),
        MAX_FORM_BYTES=str(FORM_LIMIT),
    )
    server.start()
    yield server
    server.stop()


def chunked(data: bytes, size: int = 4096):
    """A body requests sends with `Transfer-Encoding: chunked` (it has no length)."""
    return (data[i : i + size] for i in range(0, len(data), size))


def post_chunked(server, path: str, body: bytes, key: str, **headers) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers}
    return requests.post(f"{server.url}{path}", data=chunked(body), headers=headers, timeout=30)


def assert_too_large_in_dialect(path: str, response: requests.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    if path.startswith("/v1/"):
        assert body["error"]["code"] == "request_too_large"
    elif path.startswith("/anthropic/"):
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
    else:
        assert body["error"]["code"] == 413 and body["error"]["status"] == "INVALID_ARGUMENT"


def untouched(app, account_id: int, credits: int) -> bool:
    with app.app_context():
        account = db.session.get(Account, account_id)
        used = db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.account_id == account_id)
        )
        return (account.balance_nanocredits, account.held_nanocredits, used) == (
            credits * 10**9,
            0,
            0,
        )


@pytest.mark.parametrize("overflow", ["text", "trailing spaces"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_a_chunked_body_over_max_request_bytes_is_a_413_never_forwarded_truncated(
    app, small_limits_server, fakes, funded_key, path, overflow
):
    """`trailing spaces`: a valid request padded past the limit, whose truncation is still valid
    JSON; it used to be cut at the limit and sent on."""
    key, account_id, _ = funded_key("1")
    if overflow == "text":
        body = json.dumps(ROUTES[path]("word " * (LIMIT // 5))).encode()
    else:
        body = json.dumps(ROUTES[path]("hi")).encode() + b" " * LIMIT
    assert len(body) > LIMIT
    assert_too_large_in_dialect(path, post_chunked(small_limits_server, path, body, key))
    assert fakes.calls == []
    assert untouched(app, account_id, 1)


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_chunked_body_within_max_request_bytes_is_read_whole(
    small_limits_server, fakes, funded_key, path
):
    key, _, _ = funded_key("1")
    text = "word " * ((LIMIT - 1024) // 5) + "end"
    body = json.dumps(ROUTES[path](text)).encode()
    body += b" " * (LIMIT - len(body))  # exactly at the limit
    response = post_chunked(small_limits_server, path, body, key)
    assert response.status_code == 200, response.text[:300]
    sent = json.dumps(fakes.wait_for_calls(1)[0].body)
    assert text in sent


def announce_only(server, path: str, length: int, content_type: str) -> http.client.HTTPResponse:
    """Send only the headers of a body of `length` bytes, and read the answer: a server that read
    the body before answering would never answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", content_type)
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


@pytest.mark.parametrize(
    ("path", "content_type", "answer"),
    [
        ("/login", "application/x-www-form-urlencoded", "text/html"),
        ("/signup", "application/x-www-form-urlencoded", "text/html"),
        ("/webhooks/stripe", "application/json", "application/json"),
        ("/v1/chat/completions", "application/json", "application/json"),
        ("/anthropic/v1/messages", "application/json", "application/json"),
        (GEMINI, "application/json", "application/json"),
    ],
)
def test_a_400_mb_body_is_refused_before_it_is_read(live_server, path, content_type, answer):
    response = announce_only(live_server, path, 400 * 1024 * 1024, content_type)
    assert response.status == 413
    assert response.getheader("Content-Type").startswith(answer)
    if answer == "text/html":
        assert b"too large" in response.body


def test_a_page_post_over_max_form_bytes_is_refused_with_the_html_413_page(
    small_limits_server, make_account
):
    form = b"email=a%40example.com&password=" + b"a" * FORM_LIMIT
    for body in (requests.post, "chunked"):
        data = form if body is requests.post else chunked(form)
        response = requests.post(
            f"{small_limits_server.url}/login",
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert response.status_code == 413
        assert response.headers["Content-Type"].startswith("text/html")
        assert "too large" in response.text


def test_a_chunked_webhook_over_max_form_bytes_is_a_413(app, small_limits_server):
    payload = b'{"id": "evt_big", "type": "t", "data": {"pad": "' + b"a" * FORM_LIMIT + b'"}}'
    response = requests.post(
        f"{small_limits_server.url}/webhooks/stripe",
        data=chunked(payload),
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=0"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/json")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
