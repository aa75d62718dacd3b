"""Every failure path (issue 3, item 7) through every provider and route, with the official SDKs as
clients: the caller gets the error in its route's dialect, only proven usage is billed, no hold
stays open, and `flask ledger check` (the real CLI, in its own process) passes afterwards.

tests/proxy/test_failures.py holds the first cases (chat 4xx, a 429 with Retry-After, a read
timeout on chat, drops and disconnects on some routes); this module widens them to the whole
matrix: route (chat completions for the four providers, Responses for OpenAI and xAI, the native
Anthropic and Gemini routes) x stream x failure.

Servers: the session `live_server` against the fakes where its settings suffice; besides it, one
with a one-second read timeout (hangs before and during a stream, quickly), one whose providers
sit behind a socket that never accepts (connect timeouts), one in front of `StubUpstream` (5xx
answers with Retry-After, which the fakes only send on 429) and one with no provider configured
(503). The slow cases run a whole answer and a stream (or all routes) at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Account, Hold, LedgerEntry, UsageRecord
from app.services.ledger import check_invariants
from app.services.money import credits_to_nanos
from tests.fakes.common import text_pieces
from tests.proxy.billing import billed_classes, expected_cost, open_holds, wait_for_settlement
from tests.proxy.conftest import PROJECT_ROOT, LiveServer
from tests.proxy.exact import ceil_quarter, record_classes

START_CREDITS = "5"
START_NANOS = credits_to_nanos(START_CREDITS)
ANTHROPIC_MAX_TOKENS = 200
SDK_TIMEOUT = 30


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch):
    """Each case registers a customer; none ever signs in, so scrypt's tenth of a second per
    account buys nothing here (only this test process hashes passwords)."""
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        "app.services.accounts.generate_password_hash",
        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1"),
    )


# --- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    kind: str  # chat | responses | messages | gemini
    provider: str  # the fake upstream that answers: openai | xai | anthropic | gemini
    model: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.provider}"

    @property
    def dialect(self) -> str:
        return {"messages": "anthropic", "gemini": "google"}.get(self.kind, "openai")

    @property
    def counts_early(self) -> bool:
        """The provider reports counts before the end (Anthropic's message_start, Gemini's
        cumulative chunks): a stream cut short is `partial`, else `estimated`."""
        return self.provider in ("anthropic", "gemini")

    @property
    def drained(self) -> bool:
        """Google bills a generation its client left: the gateway reads it to its end."""
        return self.provider == "gemini"


ROUTES = [
    Route("chat", "openai", "gpt-4o-mini"),
    Route("chat", "xai", "grok-3-mini"),
    Route("chat", "anthropic", "claude-haiku-4-5"),
    Route("chat", "gemini", "gemini-3.5-flash-lite"),
    Route("responses", "openai", "gpt-5-mini"),
    Route("responses", "xai", "grok-3-mini"),
    Route("messages", "anthropic", "claude-haiku-4-5"),
    Route("gemini", "gemini", "gemini-3.5-flash-lite"),
]
STREAMS = [pytest.param(False, id="whole"), pytest.param(True, id="stream")]


def route_params() -> list:
    """ROUTES as parameters, each named by its id."""
    return [pytest.param(route, id=route.id) for route in ROUTES]


# --- the official SDKs as clients ----------------------------------------------------------------


class InStreamError(Exception):
    """A Responses stream's own `error` / `response.failed` event (the SDK yields those)."""

    def __init__(self, payload: dict):
        super().__init__(payload.get("type"))
        self.payload = payload


def openai_client(server, key) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=SDK_TIMEOUT
    )


def anthropic_client(server, key) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{server.url}/anthropic", api_key=key, max_retries=0, timeout=SDK_TIMEOUT
    )


def genai_client(server, key) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=f"{server.url}/gemini", timeout=SDK_TIMEOUT * 1000),
    )


def open_stream(route: Route, server, key: str, prompt: str):
    """(iterator of the text pieces the client receives, close)."""
    if route.kind == "chat":
        stream = openai_client(server, key).chat.completions.create(
            model=route.model, messages=[{"role": "user", "content": prompt}], stream=True
        )

        def pieces():
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

        return pieces(), stream.close
    if route.kind == "responses":
        stream = openai_client(server, key).responses.create(
            model=route.model, input=prompt, stream=True
        )

        def pieces():
            for event in stream:
                if event.type == "response.output_text.delta":
                    yield event.delta
                elif event.type in ("error", "response.failed"):
                    raise InStreamError(event.model_dump())

        return pieces(), stream.close
    if route.kind == "messages":
        stream = anthropic_client(server, key).messages.create(
            model=route.model,
            max_tokens=ANTHROPIC_MAX_TOKENS,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )

        def pieces():
            for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text

        return pieces(), stream.close
    client = genai_client(server, key)
    generator = client.models.generate_content_stream(model=route.model, contents=prompt)

    def pieces():
        for chunk in generator:
            if chunk.text:
                yield chunk.text

    def close():
        generator.close()
        client.close()

    return pieces(), close


def whole(route: Route, server, key: str, prompt: str) -> str:
    if route.kind == "chat":
        reply = openai_client(server, key).chat.completions.create(
            model=route.model, messages=[{"role": "user", "content": prompt}]
        )
        return reply.choices[0].message.content
    if route.kind == "responses":
        return (
            openai_client(server, key).responses.create(model=route.model, input=prompt).output_text
        )
    if route.kind == "messages":
        reply = anthropic_client(server, key).messages.create(
            model=route.model,
            max_tokens=ANTHROPIC_MAX_TOKENS,
            messages=[{"role": "user", "content": prompt}],
        )
        return reply.content[0].text
    with genai_client(server, key) as client:
        return client.models.generate_content(model=route.model, contents=prompt).text


SDK_ERRORS = (openai.APIError, anthropic.APIError, genai_errors.APIError, InStreamError)


@dataclass
class Outcome:
    pieces: list[str] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def consume(route: Route, server, key: str, prompt: str, stream: bool) -> Outcome:
    """Make the request and read all of it; the SDK's exception is kept, not raised."""
    outcome = Outcome()
    try:
        if not stream:
            outcome.pieces.append(whole(route, server, key, prompt))
            return outcome
        pieces, close = open_stream(route, server, key, prompt)
        try:
            for piece in pieces:
                outcome.pieces.append(piece)
        finally:
            close()
    except SDK_ERRORS as error:
        outcome.error = error
    return outcome


# --- errors in each dialect ------------------------------------------------------------------------

# DESIGN.md's error table, copied here so the gateway's own table cannot vouch for itself (with
# issue 9's `api_error` for an unconfigured provider: `overloaded_error` invited retries).
CONDITIONS = {
    "rate_limited": (429, "rate_limited", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    "upstream_error": (502, "upstream_error", "api_error", "UNAVAILABLE"),
    "provider_unavailable": (503, "provider_unavailable", "api_error", "UNAVAILABLE"),
    "upstream_timeout": (504, "upstream_timeout", "timeout_error", "DEADLINE_EXCEEDED"),
}
# An upstream 4xx passed on with its status (provider-wire-formats.md's types by status).
PASSED_ON = {
    400: ("invalid_request_error", "INVALID_ARGUMENT"),
    404: ("not_found_error", "NOT_FOUND"),
}


@dataclass
class SeenError:
    status: int | None  # the HTTP status; None for an error that came inside a 200 stream
    body: object  # the error as the dialect spells it, whole
    headers: dict


def seen(error: BaseException) -> SeenError:
    if isinstance(error, InStreamError):
        return SeenError(None, error.payload, {})
    if isinstance(error, openai.APIStatusError):
        return SeenError(error.status_code, {"error": error.body}, dict(error.response.headers))
    if isinstance(error, openai.APIError):  # raised mid-stream: `body` is the `error` member
        return SeenError(None, {"error": error.body}, {})
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code if error.status_code != 200 else None
        return SeenError(status, error.body, dict(error.response.headers))
    if isinstance(error, genai_errors.APIError):
        response = error.response
        headers = dict(getattr(response, "headers", None) or {})
        # Mid-stream, `response` is genai's wrapper of the 200 stream; else the HTTP answer.
        in_stream = getattr(response, "status_code", None) == 200
        return SeenError(None if in_stream else error.code, error.details, headers)
    raise AssertionError(f"not an SDK error: {error!r}")


def assert_dialect(
    dialect: str,
    body,
    *,
    status: int,
    condition: str | None = None,
    google_status: str | None = None,
    anthropic_type: str | None = None,
) -> None:
    """`body` is the route dialect's error; `condition` (a row of the error table) fixes its
    code / type / status, else the passed-on 4xx table does (or the explicit overrides)."""
    if condition:
        _, openai_code, anthropic_type, google_status = CONDITIONS[condition]
    else:
        openai_code = None
        passed = PASSED_ON.get(status)
        if passed:
            anthropic_type = anthropic_type or passed[0]
            google_status = google_status or passed[1]
    assert isinstance(body, dict), body
    if dialect == "openai":
        error = body.get("error")
        assert isinstance(error, dict), f"not OpenAI-shaped: {body}"
        assert isinstance(error.get("message"), str) and error["message"], body
        assert isinstance(error.get("type"), str), body
        assert "code" in error, body
        if openai_code:
            assert error["code"] == openai_code, body
    elif dialect == "anthropic":
        assert body.get("type") == "error", body
        assert isinstance(body["error"].get("message"), str), body
        if anthropic_type:
            assert body["error"]["type"] == anthropic_type, body
    else:
        error = body.get("error")
        assert isinstance(error, dict), f"not Google-shaped: {body}"
        assert error.get("code") == status, body
        assert isinstance(error.get("message"), str), body
        if google_status:
            assert error.get("status") == google_status, body


# --- the ledger ------------------------------------------------------------------------------------


def settled(app, account_id: int, *, charged: bool, timeout: float = 15) -> UsageRecord | None:
    """Once the hold is settled: the balance is the start minus the one record's cost, the usage
    debits sum to that cost, no hold of the account is open and the invariants hold."""
    wait_for_settlement(app, account_id, timeout=timeout)
    with app.app_context():
        account = db.session.get(Account, account_id)
        records = db.session.scalars(
            select(UsageRecord).where(UsageRecord.account_id == account_id)
        ).all()
        debits = db.session.scalars(
            select(LedgerEntry.amount_nanocredits).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
            )
        ).all()
        holds_open = db.session.scalar(
            select(func.count())
            .select_from(Hold)
            .where(Hold.account_id == account_id, Hold.status == "open")
        )
        assert len(records) <= 1, "more than one usage record for one request"
        record = records[0] if records else None
        cost = record.cost_nanocredits if record else 0
        assert account.held_nanocredits == 0
        assert holds_open == 0, "a hold stayed open"
        assert account.balance_nanocredits == START_NANOS - cost
        assert sum(debits) == -cost and len(debits) == (1 if cost else 0)
        assert check_invariants() == []
        if charged:
            assert record is not None and cost > 0, "proven usage was not billed"
        else:
            assert cost == 0, f"charged {cost} nanocredits for a failed request"
            if record is not None:
                assert record.status == "upstream_error"
        db.session.expunge_all()
        return record


def assert_billed_proven(
    app, route: Route, record: UsageRecord, call, received: str, *, read_all: bool = True
) -> None:
    """A stream cut short: `partial` from the provider's counts (output never below what was
    delivered), or `estimated` as ceil(bytes delivered / 4); the cost is the catalogue price of
    exactly the recorded tokens. `read_all`: the client read all the gateway relayed (else the
    gateway may have delivered more than `received`)."""
    delivered = ceil_quarter(received)
    sent = ceil_quarter(
        "".join(text_pieces(call.provider, max(call.chunks_sent, 3))[: call.chunks_sent])
    )
    assert record.status == ("partial" if route.counts_early else "estimated")
    assert record.streamed
    assert delivered <= record.output_tokens <= max(sent, 1)
    with app.app_context():
        if record.status == "partial":
            provider = "google" if route.provider == "gemini" else route.provider
            classes, prompt = billed_classes(provider, "chat", call.usage_reported)
            assert record.input_tokens == classes["input"]
            assert record.output_tokens >= max(classes["output"], delivered)
            if read_all:
                assert record.output_tokens == max(classes["output"], delivered)
        else:
            prompt = record.input_tokens
            assert record.input_tokens > 0
            if read_all:
                assert record.output_tokens == delivered
        assert record.cost_nanocredits == expected_cost(
            record.model_id, record_classes(record), prompt
        )


def flask_ledger_check(app) -> subprocess.CompletedProcess:
    """`flask ledger check`, the real CLI in its own process, on the tests' database."""
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""),
        "REDIS_URL": app.config["REDIS_URL"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "KEY_HASH_SECRET": app.config["KEY_HASH_SECRET"],
    }
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "ledger", "check"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- upstreams the fakes cannot be -------------------------------------------------------------------

STUB_TOKEN = re.compile(r"\[\[stub:([^\]]*)\]\]")


def stub_error_body(provider: str, status: int) -> dict:
    message = f"stub upstream error {status}"
    if provider == "xai":
        return {"code": "Internal error", "error": message}
    if provider == "anthropic":
        kind = {429: "rate_limit_error", 529: "overloaded_error", 504: "timeout_error"}
        return {
            "type": "error",
            "error": {"type": kind.get(status, "api_error"), "message": message},
        }
    if provider == "gemini":
        names = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
        return {
            "error": {"code": status, "message": message, "status": names.get(status, "INTERNAL")}
        }
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


class StubUpstream:
    """Answers every provider's path with the status and retry headers that a `[[stub:...]]`
    token in the request asks for (`status=503 ra=11 ram=2500`), in that provider's error shape."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                options = {}
                for match in STUB_TOKEN.finditer(raw):
                    for item in match.group(1).split():
                        name, _, value = item.partition("=")
                        options[name] = value
                provider = self.path.split("/")[1]
                stub.requests.append((provider, self.path))
                status = int(options.get("status", "500"))
                body = json.dumps(stub_error_body(provider, status)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if "ra" in options:
                    self.send_header("Retry-After", options["ra"])
                if "ram" in options:
                    self.send_header("retry-after-ms", options["ram"])
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Blackhole:
    """A listening socket whose accept queue is full and never drained: a connection attempt
    gets no SYN-ACK, so the client's connect times out (a non-routable address may instead fail
    at once, and here 192.0.2.1 is the default gateway)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(self.sock.getsockname())
            self.fillers.append(filler)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


def base_urls(url: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{url}/openai/v1",
        "XAI_BASE_URL": f"{url}/xai/v1",
        "ANTHROPIC_BASE_URL": f"{url}/anthropic",
        "GEMINI_BASE_URL": f"{url}/gemini",
    }


@contextlib.contextmanager
def running(app, fakes, **overrides):
    server = LiveServer(app, fakes, WEB_CONCURRENCY="1", **overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def quick_timeout_server(app, fakes):
    """The fakes behind a one-second read timeout: `hang` and long `slow=` time out quickly."""
    with running(app, fakes, UPSTREAM_READ_TIMEOUT="1") as server:
        yield server


@pytest.fixture(scope="module")
def blackhole_server(app, fakes):
    hole = Blackhole()
    try:
        with running(app, fakes, UPSTREAM_CONNECT_TIMEOUT="1", **base_urls(hole.url)) as server:
            yield server
    finally:
        hole.close()


@pytest.fixture(scope="module")
def stub():
    upstream = StubUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def stub_server(app, fakes, stub):
    with running(app, fakes, **base_urls(stub.url)) as server:
        yield server


@pytest.fixture(scope="module")
def unconfigured_server(app, fakes):
    keys = {name: "" for name in ("OPENAI_API_KEY", "XAI_API_KEY", "ANTHROPIC_API_KEY")}
    with running(app, fakes, GEMINI_API_KEY="", **keys) as server:
        yield server


# --- the cases, shared by the matrix tests and the ledger sweep --------------------------------------


def check_refused(app, account_id, route, outcome, *, status, **dialect) -> SeenError:
    """A failure before any byte of the answer: an HTTP error in the dialect, no charge."""
    assert outcome.error is not None, f"no error; the client got {outcome.text!r}"
    assert outcome.pieces == []
    error = seen(outcome.error)
    assert error.status == status, error
    assert_dialect(route.dialect, error.body, status=status, **dialect)
    settled(app, account_id, charged=False)
    return error


def refused(app, server, funded_key, route, stream, prompt, *, status, **dialect) -> SeenError:
    key, account_id, _ = funded_key(START_CREDITS)
    outcome = consume(route, server, key, prompt, stream)
    return check_refused(app, account_id, route, outcome, status=status, **dialect)


def refused_in_both_modes(app, server, funded_key, route, prompt, *, status, **dialect):
    """`refused` for a whole answer and a stream at once (for the failures that take seconds)."""
    keys = {stream: funded_key(START_CREDITS) for stream in (False, True)}
    with ThreadPoolExecutor(2) as pool:
        outcomes = {
            stream: pool.submit(consume, route, server, key, prompt, stream)
            for stream, (key, _, _) in keys.items()
        }
        outcomes = {stream: future.result() for stream, future in outcomes.items()}
    for stream, (_, account_id, _) in keys.items():
        check_refused(app, account_id, route, outcomes[stream], status=status, **dialect)


def in_stream_error(route, outcome) -> SeenError:
    assert outcome.pieces, "nothing of the answer was relayed"
    assert outcome.error is not None, f"the stream ended as if whole: {outcome.text!r}"
    error = seen(outcome.error)
    assert error.status is None, f"expected an in-stream error, got HTTP {error.status}"
    return error


def cut_short(app, server, fakes, funded_key, route, prompt, *, conditions=(), provider=None):
    """A stream that starts and then fails: the part that arrived was relayed, then an error in
    the dialect (the gateway's, one of `conditions`, or the provider's own error passed on, which
    `provider` checks), and the proven usage is billed. Returns (record, the fake's call,
    outcome)."""
    key, account_id, _ = funded_key(START_CREDITS)
    outcome = consume(route, server, key, prompt, stream=True)
    error = in_stream_error(route, outcome)
    if conditions:
        problems = []
        for condition in conditions:
            try:
                status = CONDITIONS[condition][0]
                assert_dialect(route.dialect, error.body, status=status, condition=condition)
                break
            except AssertionError as problem:
                problems.append(problem)
        else:
            raise AssertionError(problems)
    else:
        provider(error.body)
    call = fakes.wait_for_calls(1, timeout=20)[0]
    record = settled(app, account_id, charged=True)
    assert_billed_proven(app, route, record, call, outcome.text)
    return record, call, outcome


# --- upstream 4xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404])
@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("route", route_params())
def test_upstream_4xx_is_passed_on_in_the_dialect_without_charge(
    app, live_server, fakes, funded_key, route, stream, status
):
    refused(
        app, live_server, funded_key, route, stream, f"bad [[fake:error={status}]]", status=status
    )
    call = fakes.wait_for_calls(1)[0]
    assert call.status == status and call.provider == route.provider


@pytest.mark.parametrize("status", [401, 402, 403])
@pytest.mark.parametrize("route", route_params())
def test_operator_credential_failure_upstream_is_a_502_on_every_route(
    app, live_server, fakes, funded_key, route, status
):
    error = refused(
        app,
        live_server,
        funded_key,
        route,
        False,
        f"x [[fake:error={status}]]",
        status=502,
        condition="upstream_error",
    )
    assert error.headers.get("x-should-retry") != "false"  # worth retrying: not the caller's fault


# --- upstream 429 and 5xx --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("route", route_params())
def test_upstream_429_passes_retry_after_on_every_route(
    app, live_server, fakes, funded_key, route, stream
):
    error = refused(
        app,
        live_server,
        funded_key,
        route,
        stream,
        "x [[fake:error=429]]",
        status=429,
        condition="rate_limited",
    )
    assert error.headers.get("retry-after") == "7"


@pytest.mark.parametrize(
    ("status", "stream"),
    [
        pytest.param(500, False, id="500-whole"),
        pytest.param(500, True, id="500-stream"),
        pytest.param(503, False, id="503-whole"),
        pytest.param(529, True, id="529-stream"),  # Anthropic's "overloaded"
    ],
)
@pytest.mark.parametrize("route", route_params())
def test_upstream_5xx_is_a_502_with_retry_after_passed_on(
    app, stub_server, stub, funded_key, route, stream, status
):
    before = len(stub.requests)
    error = refused(
        app,
        stub_server,
        funded_key,
        route,
        stream,
        f"x [[stub:status={status} ra=11]]",
        status=502,
        condition="upstream_error",
    )
    assert error.headers.get("retry-after") == "11"
    assert len(stub.requests) == before + 1  # the gateway made one call and did not retry


@pytest.mark.parametrize("route", route_params())
def test_upstream_504_is_a_504_with_retry_after_passed_on(
    app, stub_server, stub, funded_key, route
):
    error = refused(
        app,
        stub_server,
        funded_key,
        route,
        False,
        "x [[stub:status=504 ra=13]]",
        status=504,
        condition="upstream_timeout",
    )
    assert error.headers.get("retry-after") == "13"


@pytest.mark.parametrize("route", route_params())
def test_upstream_429_retry_after_ms_is_passed_on_too(app, stub_server, funded_key, route):
    error = refused(
        app,
        stub_server,
        funded_key,
        route,
        True,
        "x [[stub:status=429 ra=3 ram=2500]]",
        status=429,
        condition="rate_limited",
    )
    assert error.headers.get("retry-after") == "3"
    assert error.headers.get("retry-after-ms") == "2500"


# --- timeouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", route_params())
def test_connect_timeout_is_a_504_without_charge(app, blackhole_server, funded_key, route):
    refused_in_both_modes(
        app, blackhole_server, funded_key, route, "hi", status=504, condition="upstream_timeout"
    )


@pytest.mark.parametrize("route", route_params())
def test_upstream_silent_before_answering_is_a_504_without_charge(
    app, quick_timeout_server, fakes, funded_key, route
):
    refused_in_both_modes(
        app,
        quick_timeout_server,
        funded_key,
        route,
        "x [[fake:hang]]",
        status=504,
        condition="upstream_timeout",
    )
    calls = fakes.wait_for_calls(2, timeout=10)
    assert [call.status for call in calls] == [0, 0]  # the gateway hung up before any answer


MID_STREAM_HANG = "x [[fake:slow=5000 chunks=3]]"  # "Hello", then 5 s of silence


@pytest.mark.parametrize("route", route_params())
def test_upstream_hanging_mid_stream_is_an_in_stream_error_and_bills_what_arrived(
    app, quick_timeout_server, fakes, funded_key, route
):
    """Which error it is (it should be the timeout) is the next test's; this one is the rest."""
    _, call, outcome = cut_short(
        app,
        quick_timeout_server,
        fakes,
        funded_key,
        route,
        MID_STREAM_HANG,
        conditions=["upstream_timeout", "upstream_error"],
    )
    assert outcome.text == "Hello"
    assert not call.completed and call.chunks_sent == 1  # the gateway hung up on the provider


def test_upstream_hanging_mid_stream_is_reported_as_a_timeout_on_every_route(
    app, live_server, fakes, funded_key
):
    keys = [funded_key(START_CREDITS)[0] for _ in ROUTES]

    def hang(route, key):
        return consume(route, live_server, key, "x [[fake:slow=8000 chunks=3]]", stream=True)

    with ThreadPoolExecutor(len(ROUTES)) as pool:
        outcomes = list(pool.map(hang, ROUTES, keys))
    wrong = {}
    for route, outcome in zip(ROUTES, outcomes, strict=True):
        error = in_stream_error(route, outcome)
        try:
            assert_dialect(route.dialect, error.body, status=504, condition="upstream_timeout")
        except AssertionError:
            wrong[route.id] = error.body
    assert not wrong, f"{len(wrong)} of {len(ROUTES)} routes: {wrong}"


# --- the upstream drops the connection ---------------------------------------------------------------


@pytest.mark.parametrize("route", route_params())
def test_upstream_drop_mid_stream_is_an_in_stream_502_and_bills_proven_usage(
    app, live_server, fakes, funded_key, route
):
    _, call, outcome = cut_short(
        app,
        live_server,
        fakes,
        funded_key,
        route,
        "x [[fake:drop=2 chunks=6]]",
        conditions=["upstream_error"],
    )
    assert outcome.text == "Hello from"
    assert not call.completed and call.chunks_sent == 2


@pytest.mark.parametrize("route", route_params())
def test_upstream_drop_before_any_byte_is_a_502_without_charge(
    app, live_server, fakes, funded_key, route
):
    refused(
        app,
        live_server,
        funded_key,
        route,
        False,
        "x [[fake:drop=0]]",
        status=502,
        condition="upstream_error",
    )


def test_gemini_json_array_stream_cut_short_stays_valid_json(app, live_server, fakes, funded_key):
    """`:streamGenerateContent` without alt=sse is a JSON array (raw HTTP: google-genai always
    asks for SSE); cut short, it must still parse, ending with the error element."""
    key, account_id, _ = funded_key(START_CREDITS)
    response = requests.post(
        f"{live_server.url}/gemini/v1beta/models/gemini-3.5-flash-lite:streamGenerateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"parts": [{"text": "x [[fake:drop=2 chunks=6]]"}]}]},
        timeout=SDK_TIMEOUT,
    )
    record = settled(app, account_id, charged=True)
    assert record.status == "partial"
    assert response.status_code == 200
    items = json.loads(response.text)
    assert (
        "".join(
            part["text"]
            for item in items[:-1]
            for candidate in item["candidates"]
            for part in candidate["content"]["parts"]
        )
        == "Hello from"
    )
    assert_dialect("google", items[-1], status=502, condition="upstream_error")


# --- the provider's own error mid-stream -------------------------------------------------------------


def provider_error_check(route: Route):
    """What the provider's in-stream error (the fakes' `midstream_error`) must look like to the
    client: the route's dialect, with the provider's meaning kept where the dialect can say it."""

    def check(body) -> None:
        if route.kind == "responses":
            assert body["type"] in ("error", "response.failed"), body
            assert body.get("message") or (body.get("response") or {}).get("error"), body
        elif route.dialect == "openai":
            assert_dialect("openai", body, status=500)
        elif route.dialect == "anthropic":
            assert_dialect("anthropic", body, status=529, anthropic_type="overloaded_error")
        else:
            assert_dialect("google", body, status=500, google_status="INTERNAL")

    return check


@pytest.mark.parametrize(
    "route",
    route_params(),
)
def test_provider_error_mid_stream_reaches_the_client_in_dialect_and_bills_proven_usage(
    app, live_server, fakes, funded_key, route
):
    _, call, outcome = cut_short(
        app,
        live_server,
        fakes,
        funded_key,
        route,
        "x [[fake:midstream_error]]",
        provider=provider_error_check(route),
    )
    assert outcome.text == "Hello from"
    assert call.completed  # the provider ended its answer itself


# --- the client disconnects --------------------------------------------------------------------------


@pytest.mark.parametrize("route", route_params())
def test_client_disconnect_mid_stream_bills_proven_usage(
    app, live_server, fakes, funded_key, route
):
    """OpenAI, Anthropic and xAI stop generating when the connection closes: the gateway closes it
    and bills what was proven. Google bills the whole generation: the gateway reads it to its
    final counts and bills those."""
    key, account_id, _ = funded_key(START_CREDITS)
    if route.drained:
        prompt = "x [[fake:long_after_disconnect chunks=3]]"
    else:
        prompt = "x [[fake:slow=200 chunks=20]]"
    pieces, close = open_stream(route, live_server, key, prompt)
    received = [next(pieces), next(pieces)]
    close()
    call = fakes.wait_for_calls(1, timeout=30)[0]
    record = settled(app, account_id, charged=True, timeout=30)
    if route.drained:
        assert call.completed, "the gateway left a Gemini stream Google goes on billing"
        assert record.status == "ok"
        with app.app_context():
            classes, prompt_tokens = billed_classes("google", "gemini", call.usage_reported)
            assert record.input_tokens == classes["input"]
            assert record.output_tokens == classes["output"]
            assert record.cost_nanocredits == expected_cost(route.model, classes, prompt_tokens)
    else:
        assert not call.completed, "the gateway did not hang up on the provider"
        assert call.chunks_sent < 20
        assert_billed_proven(app, route, record, call, "".join(received), read_all=False)


# --- provider not configured -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("route", route_params())
def test_provider_not_configured_is_a_503_on_every_route(
    app, unconfigured_server, fakes, funded_key, route, stream
):
    error = refused(
        app,
        unconfigured_server,
        funded_key,
        route,
        stream,
        "hi",
        status=503,
        condition="provider_unavailable",
    )
    assert error.headers.get("x-should-retry") == "false"
    assert fakes.calls == []


# --- `flask ledger check` after every kind of failure ---------------------------------------------------


def test_flask_ledger_check_passes_after_every_failure_path(
    app,
    live_server,
    quick_timeout_server,
    blackhole_server,
    stub_server,
    unconfigured_server,
    fakes,
    funded_key,
):
    """Every kind of failure, each through another route (every route serves some), all on one
    database, then the real CLI in its own process; and the same CLI fails once the ledger is
    made inconsistent (so it read this database, and its pass means something)."""
    chat_openai, chat_xai, chat_anthropic, chat_gemini, resp_openai, resp_xai, messages, gemini = (
        ROUTES
    )
    for route, stream, prompt, status in [
        (chat_openai, False, "x [[fake:error=400]]", 400),
        (gemini, True, "x [[fake:error=404]]", 404),
    ]:
        refused(app, live_server, funded_key, route, stream, prompt, status=status)
    for server, route, stream, prompt, status, condition in [
        (live_server, chat_xai, True, "x [[fake:error=429]]", 429, "rate_limited"),
        (live_server, messages, False, "x [[fake:error=403]]", 502, "upstream_error"),
        (live_server, resp_openai, False, "x [[fake:drop=0]]", 502, "upstream_error"),
        (stub_server, chat_anthropic, False, "x [[stub:status=503 ra=5]]", 502, "upstream_error"),
        (stub_server, resp_xai, True, "x [[stub:status=500 ra=5]]", 502, "upstream_error"),
        (unconfigured_server, chat_gemini, True, "hi", 503, "provider_unavailable"),
        (blackhole_server, resp_xai, False, "hi", 504, "upstream_timeout"),
        (quick_timeout_server, chat_openai, True, "x [[fake:hang]]", 504, "upstream_timeout"),
    ]:
        refused(app, server, funded_key, route, stream, prompt, status=status, condition=condition)
    for server, route, prompt, conditions in [
        (live_server, resp_xai, "x [[fake:drop=2 chunks=6]]", ["upstream_error"]),
        (live_server, gemini, "x [[fake:drop=2 chunks=6]]", ["upstream_error"]),
        (
            quick_timeout_server,
            chat_anthropic,
            MID_STREAM_HANG,
            ["upstream_timeout", "upstream_error"],
        ),
    ]:
        fakes.reset()
        cut_short(app, server, fakes, funded_key, route, prompt, conditions=conditions)
    for route in (messages, chat_gemini):
        fakes.reset()
        cut_short(
            app,
            live_server,
            fakes,
            funded_key,
            route,
            "x [[fake:midstream_error]]",
            provider=provider_error_check(route),
        )
    for route, prompt in [
        (resp_openai, "x [[fake:slow=200 chunks=20]]"),  # the gateway closes upstream
        (gemini, "x [[fake:long_after_disconnect chunks=3]]"),  # the gateway drains it
    ]:
        fakes.reset()
        key, account_id, _ = funded_key(START_CREDITS)
        pieces, close = open_stream(route, live_server, key, prompt)
        next(pieces)
        close()
        fakes.wait_for_calls(1, timeout=30)
        settled(app, account_id, charged=True, timeout=30)

    assert open_holds(app) == 0
    with app.app_context():
        records = db.session.scalars(select(UsageRecord.status)).all()
    assert {"upstream_error", "partial", "estimated", "ok"} <= set(records)
    assert len(records) >= 17

    result = flask_ledger_check(app)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger ok" in result.stdout

    with app.app_context():  # the control: one cached balance off by one nanocredit
        db.session.execute(
            text(
                "UPDATE accounts SET balance = balance + 1 "
                "WHERE id = (SELECT MIN(account_id) FROM usage_records)"
            )
        )
        db.session.commit()
    result = flask_ledger_check(app)
    assert result.returncode != 0, "flask ledger check did not see this database"
