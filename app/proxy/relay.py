"""What every relay (upstream answer -> client answer) provides to the gateway, and the base
that relays share.

Streams are fed as the bytes the upstream sent. Relays of the client's own dialect pass each event
on as it came and parse JSON only where metering needs it (`on_raw`); relays that translate decode
and parse each event once (`EventRelay.on_event`).
"""

from __future__ import annotations

import json
import re
from typing import ClassVar, Protocol

from app.proxy.errors import OPENAI, ProxyError, stream_error_event
from app.proxy.metering import PricedModel, Usage
from app.proxy.sse import Event, SSEParser


class Relay(Protocol):
    """Turns the upstream answer into the client's, and keeps the usage it proves."""

    model: PricedModel
    usage: Usage | None
    usage_complete: bool  # the provider's final counts were seen
    finished: bool  # the stream's terminal event was seen
    failed: bool  # the provider's own in-stream error was passed on
    delivered_bytes: int

    def response_body(self, upstream: dict) -> dict: ...

    def feed(self, chunk: bytes) -> bytes:
        """What to send the client for these upstream bytes (cut anywhere)."""
        ...

    def end(self) -> bytes:
        """The upstream ended cleanly: what is left to send. When the stream is neither
        finished nor failed by then, only what the last bytes held (the caller reports the
        early end)."""
        ...

    def error_frame(self, error: ProxyError) -> bytes:
        """A failure after the stream started, as the client's stream carries it."""
        ...


class BaseRelay:
    """The state every relay keeps, and SSE framing of the upstream bytes."""

    dialect: ClassVar[str] = OPENAI  # the client's

    def __init__(self, model: PricedModel):
        self.model = model
        self.usage: Usage | None = None
        self.usage_complete = False
        self.finished = False
        self.failed = False
        self.delivered_bytes = 0
        self._parser = SSEParser()

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        """One upstream event -> the bytes for the client."""
        raise NotImplementedError

    def closing(self) -> bytes:
        """What ends a complete stream (after its last event)."""
        return b""

    def feed(self, chunk: bytes) -> bytes:
        events = self._parser.feed(chunk)
        if len(events) == 1:
            return self.on_raw(*events[0])
        return b"".join([self.on_raw(name, data) for name, data in events])

    def end(self) -> bytes:
        frames = [self.on_raw(name, data) for name, data in self._parser.flush()]
        if self.finished or self.failed:
            frames.append(self.closing())
        return b"".join(frames)

    def error_frame(self, error: ProxyError) -> bytes:
        return stream_error_event(error, self.dialect)


class EventRelay(BaseRelay):
    """A relay that translates: each event decoded and its JSON parsed once, in `on_event`."""

    def on_event(self, event: Event) -> list[bytes]:
        raise NotImplementedError

    def on_end(self) -> list[bytes]:
        return []

    def on_raw(self, name: bytes | None, data: bytes) -> bytes:
        return b"".join(self.on_event(Event.decode((name, data))))

    def closing(self) -> bytes:
        return b"".join(self.on_end())


# --- reading JSON without parsing it -------------------------------------------------------------


def is_object(data: bytes) -> bool:
    """Whether event data can be a JSON object (anything else is skipped, as it always was)."""
    return data.startswith(b"{") or data.lstrip().startswith(b"{")


class StringValues:
    """The string values of some keys, anywhere in raw JSON, found without parsing it. A key
    cannot match inside a string value: the quotes around it would be escaped there."""

    def __init__(self, *keys: str):
        self._keys = [
            (
                b'"' + key.encode() + b'"',
                re.compile(
                    rb'"' + re.escape(key.encode()) + rb'"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"'
                ),
            )
            for key in keys
        ]

    def utf8_length(self, data: bytes) -> int:
        """Their UTF-8 length as delivered (escapes decoded): what metering counts."""
        total = 0
        for key, pattern in self._keys:
            if key not in data:  # a plain search first: most chunks lack most keys
                continue
            for value in pattern.findall(data):
                if b"\\" in value:
                    value = json.loads(b'"' + value + b'"').encode("utf-8", "surrogatepass")
                total += len(value)
        return total


_decoder = json.JSONDecoder()


def object_value(key: str) -> re.Pattern[bytes]:
    """A pattern for where the value of this key starts in raw JSON, when it is an object with
    something in it."""
    return re.compile(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*(?=\{\s*")')


def parse_object_at(pattern: re.Pattern[bytes], data: bytes) -> dict | None:
    """The first object `pattern` (from `object_value`) finds in raw JSON, parsed alone."""
    match = pattern.search(data)
    if match is None:
        return None
    try:
        value, _ = _decoder.raw_decode(data[match.end() :].decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
