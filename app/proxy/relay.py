"""What every relay (upstream answer -> client answer) provides to the gateway."""

from __future__ import annotations

from typing import Protocol

from app.proxy.metering import Usage
from app.proxy.sse import Event


class Relay(Protocol):
    """Turns the upstream answer into the client's, and keeps the usage it proves."""

    usage: Usage | None
    usage_complete: bool  # the provider's final counts were seen
    finished: bool  # the stream's terminal event was seen
    failed: bool  # the provider's own in-stream error was passed on
    delivered_bytes: int

    def response_body(self, upstream: dict) -> dict: ...

    def on_event(self, event: Event) -> list[bytes]: ...

    def on_end(self) -> list[bytes]: ...
