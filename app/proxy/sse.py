"""Server-sent events: an incremental parser for upstream streams, and frame builders.

The parser works on bytes and decodes nothing: relays that pass frames through unchanged read
the event name and data as the provider sent them, and only relays that translate decode them
(`Event`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# One event as it came: (the `event:` name or None, the `data:` lines joined by \n).
RawEvent = tuple[bytes | None, bytes]


@dataclass
class Event:
    data: str
    event: str | None = None

    @classmethod
    def decode(cls, raw: RawEvent) -> Event:
        name, data = raw
        return cls(
            data.decode("utf-8", errors="replace"),
            None if name is None else name.decode("utf-8", errors="replace"),
        )

    def json_object(self) -> dict | None:
        """The data as a JSON object, or None when it is anything else (relays skip those)."""
        return json_object(self.data)


def json_object(data: str | bytes) -> dict | None:
    """`data` parsed when it is a JSON object; None when it is anything else."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class SSEParser:
    """Feed bytes as they arrive, cut anywhere; complete events come out, undecoded.

    Handles \\n, \\r\\n and \\r line endings: they are made \\n first, so events end at a blank
    line, "\\n\\n". A \\r at the end of what has arrived may be the first half of \\r\\n, so it
    waits for the next chunk.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[RawEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop() + held if held else blocks.pop()
        if len(blocks) == 1:  # the common case: one event per read, one data line
            block = blocks[0]
            if block.startswith(b"data: ") and b"\n" not in block:
                return [(None, block[6:])]
        return [event for event in map(_event, blocks) if event is not None]

    def flush(self) -> list[RawEvent]:
        """At end of stream: an event not followed by a blank line still counts."""
        rest = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self._buffer = b""
        event = _event(rest)
        return [event] if event is not None else []


def _event(block: bytes) -> RawEvent | None:
    """The event in the lines of one block; None when it has neither data nor a name (only
    comments, such as an upstream's keep-alives)."""
    if block.startswith(b"data: ") and b"\n" not in block:
        return None, block[6:]
    name = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data and name is None:
        return None
    return name, b"\n".join(data)


def parse_stream(chunks: Iterable[bytes]) -> Iterator[Event]:
    parser = SSEParser()
    for chunk in chunks:
        yield from map(Event.decode, parser.feed(chunk))
    yield from map(Event.decode, parser.flush())


def frame(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def raw_frame(data: bytes, event: bytes | None = None, eol: bytes = b"\n") -> bytes:
    """An event passed on as it came; data of several lines stays several `data:` lines."""
    if b"\n" in data:
        data = data.replace(b"\n", eol + b"data: ")
    if event is None:
        return b"data: " + data + eol + eol
    return b"event: " + event + eol + b"data: " + data + eol + eol


KEEPALIVE_FRAME = b": keep-alive\n\n"
DONE_FRAME = b"data: [DONE]\n\n"  # the end of a Chat Completions stream
