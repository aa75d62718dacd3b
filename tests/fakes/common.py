"""Machinery the fake providers share: the call record, fault directives, streaming, helpers."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# The record of one request


@dataclass(eq=False)
class Call:
    """One request the fakes received, and what they did with it.

    `usage_reported` is the usage object exactly as the fake put it on the wire, in the
    provider's native shape: for a stream the last (cumulative) one actually written, None when
    none was written. `completed` is True once the fake wrote its whole answer; False while it is
    still answering and when the client went away (or the fake dropped the connection) first.
    `finished` is True once the fake's handler is done with the request, either way.
    """

    provider: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    usage_reported: dict | None = None
    stream: bool = False
    completed: bool = False
    chunks_sent: int = 0
    status: int = 0
    directives: Directives | None = None
    finished: bool = False
    started_at: float = field(default_factory=time.monotonic)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait_finished(self, timeout: float = 10.0) -> bool:
        """Wait until the fake's handler is done with this request; True if it is."""
        return self._done.wait(timeout)

    def mark_finished(self) -> None:
        self.finished = True
        self._done.set()


# ---------------------------------------------------------------------------------------------
# Fault and shape directives: `[[fake:MODE]]` anywhere in the request text

DIRECTIVE_RE = re.compile(r"\[\[fake:([^\]]*)\]\]")
_INT_OPTIONS = {
    "error": "error",
    "drop": "drop",
    "slow": "slow_ms",
    "chunks": "chunks",
    "reasoning": "reasoning",
    "cached": "cached",
    "cache_write": "cache_write",
    "cache_write_1h": "cache_write_1h",
    "tooluse": "tooluse",
}
_FLAGS = {"hang", "midstream_error", "tool", "nousage", "long_after_disconnect"}


class DirectiveError(ValueError):
    """A `[[fake:...]]` token the fakes do not understand (answered with a 400)."""


@dataclass
class Directives:
    error: int | None = None
    hang: bool = False
    drop: int | None = None
    midstream_error: bool = False
    slow_ms: int = 0
    chunks: int = 3
    reasoning: int = 0
    cached: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    tooluse: int = 0
    tool: bool = False
    nousage: bool = False
    long_after_disconnect: bool = False


def parse_directives(text: str) -> Directives:
    """Read every `[[fake:...]]` token of `text` (several per token may be comma-separated)."""
    d = Directives()
    for match in DIRECTIVE_RE.finditer(text):
        for item in re.split(r"[,\s]+", match.group(1).strip()):
            if not item:
                continue
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if name in _FLAGS and not eq:
                setattr(d, name, True)
            elif name in _INT_OPTIONS and eq:
                try:
                    number = int(value)
                except ValueError:
                    raise DirectiveError(f"fake directive {item!r} needs an integer") from None
                if number < 0:
                    raise DirectiveError(f"fake directive {item!r} must not be negative")
                setattr(d, _INT_OPTIONS[name], number)
            else:
                raise DirectiveError(f"unknown fake directive {item!r}")
    d.chunks = max(d.chunks, 1)
    return d


# ---------------------------------------------------------------------------------------------
# Deterministic answers


def count_words(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts if isinstance(t, str))


def text_pieces(provider: str, n: int) -> list[str]:
    """The answer's content chunks: they join to "Hello from <provider>" (+ " chunkK" beyond 3)."""
    words = ["Hello", " from", f" {provider}"] + [f" chunk{k}" for k in range(3, n)]
    if n >= len(words):
        return words
    return [*words[: n - 1], "".join(words[n - 1 :])]


def answer_pieces(provider: str, chunks: int, planned: int) -> list[str]:
    """The content chunks actually sent: an answer cut short is the first part of the full one."""
    return text_pieces(provider, max(chunks, planned))[:chunks]


def split_string(s: str, n: int) -> list[str]:
    """Split `s` into `n` consecutive pieces (some may be empty when `s` is shorter than n)."""
    size = len(s)
    return [s[size * k // n : size * (k + 1) // n] for k in range(n)]


def example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "fake"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        return example_args(schema)
    if kind == "array":
        return [example_value(schema.get("items"))] if schema.get("items") else []
    if kind in {"integer", "number"}:
        return 1
    if kind == "boolean":
        return True
    return "fake"


def example_args(schema: Any) -> dict:
    """Arguments for a tool call that satisfy a JSON schema's properties, deterministically."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    return {name: example_value(sub) for name, sub in props.items()}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_hex(length // 2)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def apply_output_limit(chunks: int, reasoning: int, limit: Any) -> tuple[int, int, bool]:
    """Cap the answer at an output limit (reasoning counts against it): (chunks, reasoning, cut)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return chunks, reasoning, False
    if reasoning + 2 * chunks <= limit:
        return chunks, reasoning, False
    reasoning = min(reasoning, limit)
    return max(0, (limit - reasoning) // 2), reasoning, True


def fault_chunk_count(chunks: int, d: Directives) -> int:
    """Enough content chunks that a drop or an in-stream error happens before the end."""
    if d.drop is not None:
        chunks = max(chunks, d.drop + 1)
    if d.midstream_error:
        chunks = max(chunks, 3)
    return chunks


MIDSTREAM_ERROR_AFTER = 2

# ---------------------------------------------------------------------------------------------
# Writing answers


@dataclass
class Frame:
    """Bytes to write, and what they mean for the call record.

    `content`: the frame carries one content chunk (counted in chunks_sent, subject to slow=).
    `usage`: the usage object this frame puts on the wire. `delay_ms`: sleep before it (overrides
    slow=). `drop`: instead of writing, close the connection abruptly.
    """

    data: bytes = b""
    content: bool = False
    usage: dict | None = None
    delay_ms: int | None = None
    drop: bool = False


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    frames: Iterable[Frame]
    stream: bool = False


class Ctx:
    """What a provider handler needs: the request, the directives and the connection."""

    def __init__(
        self,
        *,
        call: Call,
        provider: str,
        body: Any,
        query: dict[str, str],
        directives: Directives,
        environ: dict,
        stopping: threading.Event,
    ) -> None:
        self.call = call
        self.provider = provider
        self.body = body
        self.query = query
        self.d = directives
        self.environ = environ
        self.stopping = stopping

    # -- the client connection --------------------------------------------------------------

    @property
    def sock(self) -> socket.socket | None:
        return self.environ.get("werkzeug.socket")

    def client_gone(self) -> bool:
        """True when the client closed its end of the connection (or it broke)."""
        sock = self.sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True

    def sleep(self, ms: int) -> bool:
        """Sleep `ms` milliseconds; False (early) if the client went away or the fakes stop."""
        deadline = time.monotonic() + ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self.stopping.wait(min(0.05, remaining)) or self.client_gone():
                return False

    def abort_connection(self) -> None:
        """Close the connection abruptly: the client sees the body end mid-way."""
        sock = self.sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _should_drop(ctx: Ctx, frame: Frame, faults: bool) -> bool:
    if frame.drop:
        return True
    drop = ctx.d.drop
    if not faults or drop is None:
        return False
    if not ctx.call.stream:
        return True  # a whole answer with drop=: the connection closes before any byte
    sent = ctx.call.chunks_sent
    return sent >= drop and (frame.content or sent > 0)


def drive(ctx: Ctx, frames: Iterable[Frame], *, faults: bool = True) -> Iterator[bytes]:
    """Write `frames` through the WSGI server, keeping the call record up to date.

    A write that fails (the client went away) makes the server close this generator: the record
    then says completed=False with the chunks and usage that did get written. With `faults`, the
    drop= and slow= directives apply. `status` becomes 0 when no byte at all was written.
    """
    call = ctx.call
    d = ctx.d
    wrote = False
    try:
        for frame in frames:
            if _should_drop(ctx, frame, faults):
                ctx.abort_connection()
                raise ConnectionAbortedError("fake upstream dropped the connection")
            delay = frame.delay_ms
            if delay is None:
                delay = d.slow_ms if (faults and frame.content and call.chunks_sent > 0) else 0
            if delay and not ctx.sleep(delay):
                ctx.abort_connection()
                raise ConnectionAbortedError("client went away")
            if call.stream and ctx.client_gone():
                ctx.abort_connection()
                raise ConnectionAbortedError("client went away")
            if frame.data:
                yield frame.data
                wrote = True
            if frame.content:
                call.chunks_sent += 1
            if frame.usage is not None:
                call.usage_reported = frame.usage
        call.completed = True
    finally:
        if not wrote and not call.completed:
            call.status = 0
        call.mark_finished()


def json_reply(
    status: int,
    obj: Any,
    *,
    usage: dict | None = None,
    chunks: int = 0,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Reply:
    data = json.dumps(obj).encode()
    frames = [Frame(data=data, usage=usage)]
    if chunks:
        # a whole answer counts its content chunks once it is written
        frames += [Frame(content=True, delay_ms=0) for _ in range(chunks)]
    return Reply(
        status=status,
        headers=[
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
        frames=frames,
    )


def sse_headers(content_type: str = "text/event-stream; charset=utf-8") -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("Cache-Control", "no-cache"),
    ]


def sse_data(obj: Any, *, event: str | None = None, eol: str = "\n") -> bytes:
    payload = obj if isinstance(obj, str) else dumps(obj)
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {payload}{eol}{eol}".encode()
