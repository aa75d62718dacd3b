"""Every request body is bounded before it is read: `MAX_CONTENT_LENGTH` (from `MAX_FORM_BYTES`)
for pages and webhooks; the proxy's routes raise it to `MAX_REQUEST_BYTES` for themselves.

Werkzeug refuses a `Content-Length` over the limit with 413 before reading, but a chunked body
(which the server terminates, `wsgi.input_terminated`) it reads only up to the limit and then
returns what it read as if it were the whole body: a truncated body, accepted. Here a body
without `Content-Length` is read through a stream that raises 413 at the first byte past it.
"""

from __future__ import annotations

import typing as t

from htmx_flask.requests import HtmxAwareRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream


class RefusingStream(LimitedStream):
    """Up to `limit` bytes of a body of unknown length; RequestEntityTooLarge on one more."""

    def __init__(self, stream: t.IO[bytes], limit: int) -> None:
        # One byte of room past the limit, so that a body longer than it is seen and refused.
        super().__init__(stream, limit + 1, is_max=True)
        self.max_bytes = limit

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        size = super().readinto(b)
        if self._pos > self.max_bytes:
            raise RequestEntityTooLarge()
        return size


class BoundedRequest(HtmxAwareRequest):
    """The request class htmx-flask installs (`request.htmx`), its body bounded."""

    @cached_property
    def stream(self) -> t.IO[bytes]:
        """The body, read at most to `max_content_length`; 413 beyond, whether or not it came
        with a `Content-Length`."""
        if self.shallow:
            raise RuntimeError("A shallow request may not read its body.")
        limit = self.max_content_length
        if (
            limit is not None
            and self.content_length is None
            and "wsgi.input_terminated" in self.environ
        ):
            return RefusingStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)
