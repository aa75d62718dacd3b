"""Local fake upstream providers for the gateway's tests: one threaded HTTP server, four APIs.

    with FakeUpstreams() as fakes:
        env = {"OPENAI_BASE_URL": fakes.base_urls["openai"], ...}
        ...
        call = fakes.last_call("anthropic")

Each provider speaks its wire format exactly (see `shared/reference/provider-wire-formats.md`)
and checks its own auth header against the operator key the fakes were built with. Faults are
chosen per request by `[[fake:MODE]]` tokens anywhere in the request's text; see README.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request

from . import fake_anthropic, fake_gemini, fake_openai
from .common import Call, Ctx, DirectiveError, Directives, Reply, drive, parse_directives

DEFAULT_KEYS: dict[str, str] = {
    "openai": "sk-upstream-openai",
    "xai": "sk-upstream-xai",
    "anthropic": "sk-upstream-anthropic",
    "gemini": "sk-upstream-gemini",
}
PROVIDERS = ("openai", "xai", "anthropic", "gemini")
HANG_SECONDS = 30

_GEMINI_ROUTE = re.compile(
    r"^/gemini/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+)"
    r":(?P<method>generateContent|streamGenerateContent|countTokens)$"
)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the tests' output stays readable."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class FakeUpstreams:
    """The fake OpenAI, xAI, Anthropic and Gemini servers, on one local port."""

    def __init__(
        self,
        keys: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        realistic_auth_errors: bool = False,
        hang_seconds: float = HANG_SECONDS,
    ) -> None:
        self.keys = {**DEFAULT_KEYS, **(keys or {})}
        self.host = host
        # Off: a wrong key is a 401 everywhere. On: as the real APIs do, xAI and Gemini
        # answer a wrong key with a 400 (Gemini: reason API_KEY_INVALID).
        self.realistic_auth_errors = realistic_auth_errors
        self.hang_seconds = hang_seconds
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.base_urls: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeUpstreams:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = make_server(self.host, 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._server = server
        self.port = server.server_port
        root = f"http://{self.host}:{self.port}"
        self.base_urls = {
            "openai": f"{root}/openai/v1",
            "xai": f"{root}/xai/v1",
            "anthropic": f"{root}/anthropic",
            "gemini": f"{root}/gemini",
        }
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.name = f"fake-upstreams-{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # hanging and slow handlers give up
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeUpstreams:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The gateway's environment for these fakes: base URLs and operator keys."""
        return {
            "OPENAI_BASE_URL": self.base_urls["openai"],
            "OPENAI_API_KEY": self.keys["openai"],
            "XAI_BASE_URL": self.base_urls["xai"],
            "XAI_API_KEY": self.keys["xai"],
            "ANTHROPIC_BASE_URL": self.base_urls["anthropic"],
            "ANTHROPIC_API_KEY": self.keys["anthropic"],
            "GEMINI_BASE_URL": self.base_urls["gemini"],
            "GEMINI_API_KEY": self.keys["gemini"],
        }

    # -- the call log -------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def calls_for(self, provider: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if provider is None or c.provider == provider]

    def last_call(self, provider: str | None = None) -> Call | None:
        calls = self.calls_for(provider)
        return calls[-1] if calls else None

    def wait_for_calls(
        self,
        n: int,
        timeout: float = 10.0,
        *,
        provider: str | None = None,
        finished: bool = True,
    ) -> list[Call]:
        """Wait until `n` calls (of `provider`) were received and, with `finished`, handled.

        Returns the calls; raises TimeoutError if they do not come in time.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                calls = [c for c in self.calls if provider is None or c.provider == provider]
                if len(calls) >= n and (not finished or all(c.finished for c in calls[:n])):
                    return calls
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {n} finished call(s) to the fakes, got "
                        f"{[(c.provider, c.path, c.finished) for c in calls]}"
                    )
                self._changed.wait(min(remaining, 0.05))

    def _record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    # -- the WSGI application ------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, Callable[[Ctx], Reply] | None]:
        provider = path.strip("/").split("/", 1)[0]
        if provider not in PROVIDERS:
            return "unknown", None
        if method != "POST":
            return provider, None
        if provider in {"openai", "xai"}:
            if path == f"/{provider}/v1/chat/completions":
                return provider, fake_openai.chat_completions
            if path == f"/{provider}/v1/responses":
                return provider, fake_openai.responses
        elif provider == "anthropic":
            if path == "/anthropic/v1/messages":
                return provider, fake_anthropic.messages
            if path == "/anthropic/v1/messages/count_tokens":
                return provider, fake_anthropic.count_tokens
        elif provider == "gemini":
            match = _GEMINI_ROUTE.match(path)
            if match:
                method_name, model = match["method"], match["model"]
                if method_name == "countTokens":
                    return provider, fake_gemini.count_tokens
                stream = method_name == "streamGenerateContent"
                return provider, lambda ctx: fake_gemini.generate(ctx, model, stream=stream)
        return provider, None

    def _authorized(self, provider: str, headers: dict[str, str], query: dict[str, str]) -> bool:
        key = self.keys[provider]
        if provider in {"openai", "xai"}:
            return _bearer(headers) == key
        if provider == "anthropic":
            return headers.get("x-api-key") == key or _bearer(headers) == key
        return headers.get("x-goog-api-key") == key or query.get("key") == key

    def _error(self, provider: str, status: int, message: str | None = None) -> Reply:
        if provider == "anthropic":
            return fake_anthropic.error_reply(status, message)
        if provider == "gemini":
            return fake_gemini.error_reply(status, message)
        if provider in {"openai", "xai"}:
            return fake_openai.error_reply(provider, status, message)
        return fake_openai.error_reply("openai", status, message)

    def _auth_error(self, provider: str) -> Reply:
        if provider == "anthropic":
            return fake_anthropic.auth_error_reply()
        if provider == "gemini":
            return fake_gemini.auth_error_reply(self.realistic_auth_errors)
        return fake_openai.auth_error_reply(provider, self.realistic_auth_errors)

    def _wsgi(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        raw = request.get_data(cache=True)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = request.args.to_dict()
        provider, handler = self._route(request.method, request.path)
        call = Call(
            provider=provider,
            path=request.path,
            query=query,
            headers=headers,
            body=body,
        )
        if provider == "gemini":
            call.stream = ":streamGenerateContent" in request.path
        elif isinstance(body, dict):
            call.stream = bool(body.get("stream"))
        self._record(call)
        ctx = Ctx(
            call=call,
            provider=provider,
            body=body,
            query=query,
            directives=Directives(),
            environ=environ,
            stopping=self._stopping,
        )
        faults = False
        if handler is None:
            reply = self._error(provider, 404, f"Unknown route {request.method} {request.path}")
        elif not self._authorized(provider, headers, query):
            reply = self._auth_error(provider)
        elif raw and body is None:
            reply = self._error(provider, 400, "The request body is not valid JSON.")
        else:
            try:
                ctx.d = parse_directives(raw.decode("utf-8", "replace"))
            except DirectiveError as exc:
                reply = self._error(provider, 400, str(exc))
            else:
                call.directives = ctx.d
                if ctx.d.hang and not ctx.sleep(int(self.hang_seconds * 1000)):
                    # the client gave up (or the fakes stop) while we hung: nothing is written
                    call.status = 0
                    ctx.abort_connection()
                    call.mark_finished()
                    return _closed_iter()
                reply = handler(ctx)
                faults = reply.status < 400
        call.status = reply.status
        phrase = HTTPStatus(reply.status).phrase if reply.status in _KNOWN else "Status"
        start_response(f"{reply.status} {phrase}", reply.headers)
        return drive(ctx, reply.frames, faults=faults)

    def __repr__(self) -> str:
        return f"<FakeUpstreams {self.url if self.port else '(stopped)'}>"


_KNOWN = {s.value for s in HTTPStatus}


def _closed_iter() -> Iterator[bytes]:
    yield from ()
    raise ConnectionAbortedError("client went away while the fake hung")


@contextlib.contextmanager
def running_fakes(**kwargs: Any):
    """`with running_fakes() as fakes:` — FakeUpstreams(**kwargs), started and stopped."""
    fakes = FakeUpstreams(**kwargs)
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()
