"""Server-sent events: an incremental parser for upstream streams, and frame builders."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class Event:
    data: str
    event: str | None = None

    def json_object(self) -> dict | None:
        """The data as a JSON object, or None when it is anything else (relays skip those)."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class SSEParser:
    """Feed bytes as they arrive; complete events come out. Handles \\n, \\r\\n and \\r endings."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            line, found = self._next_line()
            if not found:
                break
            event = self._take_line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[Event]:
        """At end of stream: an event not followed by a blank line still counts."""
        events = []
        if self._buffer:
            event = self._take_line(self._buffer)
            self._buffer = b""
            if event is not None:
                events.append(event)
        if self._data:
            events.append(Event("\n".join(self._data), self._event))
            self._data, self._event = [], None
        return events

    def _next_line(self) -> tuple[bytes, bool]:
        lf, cr = self._buffer.find(b"\n"), self._buffer.find(b"\r")
        if cr == -1 or (lf != -1 and lf < cr):
            if lf == -1:
                return b"", False
            line, self._buffer = self._buffer[:lf], self._buffer[lf + 1 :]
            return line, True
        if cr + 1 == len(self._buffer):
            return b"", False  # wait: it may be the first half of \r\n
        end = cr + 2 if self._buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
        line, self._buffer = self._buffer[:cr], self._buffer[end:]
        return line, True

    def _take_line(self, raw: bytes) -> Event | None:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if not self._data and self._event is None:
                return None
            event = Event("\n".join(self._data), self._event)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def parse_stream(chunks: Iterable[bytes]) -> Iterator[Event]:
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.flush()


def frame(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


KEEPALIVE_FRAME = b": keep-alive\n\n"
