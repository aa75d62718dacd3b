"""Relaying an upstream stream to the client, and settling it on every path."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator

from flask import Response, current_app
from urllib3.exceptions import ReadTimeoutError

from app.proxy.errors import ProxyError
from app.proxy.exchange import Exchange, settle
from app.proxy.relay import Relay
from app.proxy.sse import KEEPALIVE_FRAME
from app.proxy.upstream import UpstreamResponse

log = logging.getLogger("onekey.proxy")

# Set by the server when it is asked to stop: open streams end, bill what was proven, settle.
shutting_down = threading.Event()
# How long a stopping server keeps reading a Gemini stream for Google's final counts (Google bills
# the whole generation); well inside gunicorn's graceful timeout (gunicorn.conf.py).
SHUTDOWN_DRAIN_SECONDS = 20


def _read_upstream(response: UpstreamResponse, chunks: queue.SimpleQueue) -> None:
    """Hand on the upstream bytes as they arrive; end with None or an exception."""
    try:
        for chunk in response.iter_content(chunk_size=None):
            chunks.put(chunk)
        chunks.put(None)
    except Exception as exc:  # the relay decides what a broken upstream means
        chunks.put(exc)


class ReaderPool:
    """Threads that read upstream streams, each kept for the next stream when it is done.

    A stream needs a thread of its own: keep-alives and the read timeout must be sent while the
    upstream is silent, and a blocked read cannot be given a deadline without reaching into
    urllib3's buffers. Starting a thread costs more CPU than relaying a short stream, so threads
    are reused; one idle for `idle_seconds` ends.
    """

    def __init__(self, idle_seconds: float = 60):
        self.idle_seconds = idle_seconds
        self._idle: list[queue.SimpleQueue] = []  # the inboxes of threads waiting for a stream
        self._lock = threading.Lock()

    def read(self, response: UpstreamResponse, chunks: queue.SimpleQueue) -> threading.Event:
        """Read `response` into `chunks` on a pooled thread; the event is set once it is done."""
        done = threading.Event()
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="upstream-reader", daemon=True
            ).start()
        inbox.put((response, chunks, done))
        return done

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        job = inbox.get()
        while True:
            response, chunks, done = job
            try:
                _read_upstream(response, chunks)
            finally:
                done.set()
            job = response = chunks = done = None  # an idle thread keeps no stream alive
            with self._lock:
                self._idle.append(inbox)
            try:
                job = inbox.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                job = inbox.get()  # taken from the idle list as the wait ended: a stream is coming


readers = ReaderPool()


def _is_read_timeout(exc: Exception) -> bool:
    """Whether the upstream socket's read timed out (urllib3 raises it as ReadTimeoutError)."""
    return isinstance(exc, ReadTimeoutError | TimeoutError)


def stream_response(
    exchange: Exchange,
    response: UpstreamResponse,
    relay: Relay,
    *,
    drain_on_disconnect: bool,
    keepalives: bool,
    headers: dict,
) -> Response:
    """Relay an upstream stream to the client without buffering, and settle when it ends.

    Upstream failures after the start become an in-stream error in the client's dialect. When
    the client goes away, OpenAI, Anthropic and xAI stop generating once the connection is
    closed, so it is closed; Google keeps billing, so a Gemini stream is drained to its final
    counts first.
    """
    app = current_app._get_current_object()
    chunks: queue.SimpleQueue = queue.SimpleQueue()
    reader_done = readers.read(response, chunks)
    read_timeout = app.config["UPSTREAM_READ_TIMEOUT"]
    tick = min(app.config["SSE_KEEPALIVE_SECONDS"], read_timeout)

    def generate() -> Iterator[bytes]:
        outcome = "ok"
        completed = False
        idle = 0.0
        try:
            while True:
                if shutting_down.is_set():
                    outcome = "shutdown"
                    raise ProxyError(
                        "upstream_error", "The gateway is restarting; retry the request."
                    )
                try:
                    item = chunks.get(timeout=tick)
                except queue.Empty:
                    idle += tick
                    if idle >= read_timeout:
                        raise ProxyError(
                            "upstream_timeout", "The provider stopped answering."
                        ) from None
                    if keepalives:
                        yield KEEPALIVE_FRAME
                    continue
                idle = 0.0
                if item is None:
                    completed = True
                    tail = relay.end()
                    if tail:
                        yield tail
                    if not relay.finished and not relay.failed:
                        raise ProxyError("upstream_error", "The provider's stream ended early.")
                    break
                if isinstance(item, Exception):
                    if _is_read_timeout(item):
                        raise ProxyError("upstream_timeout", "The provider stopped answering.")
                    raise ProxyError("upstream_error", "The provider's stream broke off.")
                frames = relay.feed(item)
                if frames:
                    if exchange.first_token_at is None:
                        exchange.first_token_at = time.monotonic()
                    yield frames
        except ProxyError as error:
            outcome = "shutdown" if outcome == "shutdown" else "partial"
            yield relay.error_frame(error)
        except GeneratorExit:
            outcome = "client_disconnect"
            raise
        finally:
            try:
                if not completed and drain_on_disconnect:
                    if outcome == "client_disconnect":
                        _drain(chunks, relay, read_timeout)
                    elif outcome == "shutdown":
                        # Within the graceful stop: what is not read by then stays partial.
                        _drain(chunks, relay, read_timeout, SHUTDOWN_DRAIN_SECONDS)
                hang_up(response, reader_done)
                if not completed and outcome in ("client_disconnect", "shutdown"):
                    _feed_buffered(chunks, relay)
            finally:
                settle(app, exchange, relay, "ok")

    return Response(generate(), status=200, headers=headers, mimetype="text/event-stream")


def _upstream_socket(response: UpstreamResponse) -> socket.socket | None:
    """The socket under a streamed response: the connection's, or (once http.client has handed
    it to the response because the server will close it) the one inside the response's file."""
    connection = getattr(response.raw, "_connection", None)
    if getattr(connection, "sock", None) is not None:
        return connection.sock
    http_response = getattr(response.raw, "_fp", None)
    socket_io = getattr(getattr(http_response, "fp", None), "raw", None)
    return getattr(socket_io, "_sock", None)


def hang_up(response: UpstreamResponse, reader_done: threading.Event) -> None:
    """Close the upstream connection, even while the reader is blocked reading it.

    Closing the buffered reader under a blocked read is refused ("reentrant call"), so the socket
    is shut down first: the read returns at once and the reader ends.
    """
    sock = _upstream_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)
    reader_done.wait(timeout=5)
    try:
        response.close()
    except (OSError, RuntimeError):
        log.warning("upstream connection did not close cleanly", exc_info=True)


def _feed_buffered(chunks: queue.SimpleQueue, relay: Relay) -> None:
    """Give the relay what the reader had already read when the stream was left: the provider
    generated it (its final counts may be among it), so it is proven and billed."""
    _drain(chunks, relay, read_timeout=None)


def _drain(
    chunks: queue.SimpleQueue,
    relay: Relay,
    read_timeout: float | None,
    within: float | None = None,
) -> None:
    """Read a stream the client left to its end (or for `within` seconds at most), keeping only
    the usage it reports; with `read_timeout` None, only what the reader has queued already."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        try:
            if read_timeout is None:
                item = chunks.get_nowait()
            else:
                wait = read_timeout if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return
                item = chunks.get(timeout=min(wait, read_timeout))
        except queue.Empty:
            return
        if item is None:
            relay.end()
            return
        if isinstance(item, Exception):
            return
        relay.feed(item)
