"""A fast OpenAI-compatible fake upstream for the benchmark (not for tests: tests/fakes/ is that).

One asyncio process, a hand-written HTTP/1.1 parser with keep-alive, no framework, so that it is
never the bottleneck of a run. It answers `POST …/chat/completions` (any prefix) and `GET /healthz`.

- Non-streaming: one choice, a fixed short answer, an OpenAI `usage` object.
- Streaming (`"stream": true`): a role chunk, N content chunks, a finish chunk, then (with
  `stream_options.include_usage`) the `"choices": []` usage chunk, then `data: [DONE]`, sent with
  chunked transfer encoding.
- Knobs, read from the request body (OneKey passes unknown top-level fields through as sent) or
  from headers: `bench_chunks` / `x-bench-chunks` (content chunks of a stream, default
  --chunks), `bench_delay_ms` / `x-bench-delay-ms` (sleep between content chunks, default 0).
- `--latency-ms` adds a fixed think time before every answer (default 0).

    python bench/fake_upstream.py --port 18000 [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

try:  # uvloop is optional; the stdlib loop is fast enough for the bench's rates
    import uvloop  # type: ignore
except ImportError:  # pragma: no cover
    uvloop = None

MAX_HEADER_BYTES = 64 * 1024
ANSWER_WORDS = ["Hello", " from", " the", " bench"]


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


class Settings:
    chunks = 20
    latency = 0.0


class HTTPProtocol(asyncio.Protocol):
    """One client connection: parses pipelined-or-not HTTP/1.1 requests and answers them in order."""

    __slots__ = ("buffer", "busy", "closed", "transport")

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()
        self.busy = False
        self.closed = False

    def connection_lost(self, exc):
        self.closed = True

    def data_received(self, data):
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self):
        while not self.busy and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, _version = lines[0].split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            keep_alive = headers.get("connection", "").lower() != "close"
            self._dispatch(method, target, headers, body, keep_alive)

    def _dispatch(self, method, target, headers, body, keep_alive):
        path = target.split("?", 1)[0]
        if method == "GET" and path in ("/healthz", "/health"):
            self._send(200, b'{"ok":true}', keep_alive)
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self._send(
                404, b'{"error":{"message":"not found","type":"invalid_request_error"}}', keep_alive
            )
            return
        try:
            request = json.loads(body) if body else {}
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._send(
                400, b'{"error":{"message":"bad json","type":"invalid_request_error"}}', keep_alive
            )
            return
        chunks = int(
            request.get("bench_chunks") or headers.get("x-bench-chunks") or Settings.chunks
        )
        delay_ms = float(request.get("bench_delay_ms") or headers.get("x-bench-delay-ms") or 0)
        model = request.get("model") or "gpt-4o-mini"
        prompt_tokens = 10 + len(body) // 16
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self.busy = True
            asyncio.get_running_loop().create_task(
                self._stream(
                    model, chunks, delay_ms / 1000, include_usage, prompt_tokens, keep_alive
                )
            )
        elif Settings.latency:
            self.busy = True
            asyncio.get_running_loop().create_task(
                self._delayed_json(model, prompt_tokens, keep_alive)
            )
        else:
            self._send(200, self._completion(model, prompt_tokens), keep_alive)

    @staticmethod
    def _completion(model, prompt_tokens) -> bytes:
        answer = "".join(ANSWER_WORDS)
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(prompt_tokens, 2 * len(ANSWER_WORDS)),
                "system_fingerprint": "fp_bench",
            },
            separators=(",", ":"),
        ).encode()

    async def _delayed_json(self, model, prompt_tokens, keep_alive):
        await asyncio.sleep(Settings.latency)
        if not self.closed:
            self._send(200, self._completion(model, prompt_tokens), keep_alive)
        self.busy = False
        self._next()

    def _send(self, status, payload: bytes, keep_alive: bool):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n"
            f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()
        self.transport.write(head + payload)
        if not keep_alive:
            self.transport.close()
            self.closed = True

    def _write_event(self, obj) -> None:
        data = (
            b"data: "
            + (obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode())
            + b"\n\n"
        )
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def _stream(self, model, chunks, delay, include_usage, prompt_tokens, keep_alive):
        try:
            if Settings.latency:
                await asyncio.sleep(Settings.latency)
            if self.closed:
                return
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\nconnection: "
                + (b"keep-alive" if keep_alive else b"close")
                + b"\r\n\r\n"
            )
            created = int(time.time())
            extra = {"usage": None} if include_usage else {}
            base = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_bench",
            }
            self._write_event(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                    **extra,
                }
            )
            # Content chunks differ only in their text: serialise the frame around it once.
            prefix = (
                json.dumps(base, separators=(",", ":"))[:-1].encode()
                + b',"choices":[{"index":0,"delta":{"content":'
            )
            suffix = b'},"logprobs":null,"finish_reason":null}]' + (
                b',"usage":null}' if include_usage else b"}"
            )
            for i in range(chunks):
                if delay:
                    await asyncio.sleep(delay)
                    if self.closed:
                        return
                word = ANSWER_WORDS[i % len(ANSWER_WORDS)]
                self._write_event(prefix + json.dumps(word).encode() + suffix)
                if not delay and i % 8 == 7:
                    await asyncio.sleep(0)  # let other connections in on long fast streams
                if self.closed:
                    return
            self._write_event(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
                    ],
                    **extra,
                }
            )
            if include_usage:
                self._write_event(
                    {**base, "choices": [], "usage": _usage(prompt_tokens, 2 * chunks)}
                )
            self._write_event(b"[DONE]")
            self.transport.write(b"0\r\n\r\n")
            if not keep_alive:
                self.transport.close()
                self.closed = True
        finally:
            self.busy = False
            if not self.closed:
                self._next()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="think time before answering")
    args = parser.parse_args()
    Settings.chunks = args.chunks
    Settings.latency = args.latency_ms / 1000
    if uvloop is not None:
        uvloop.install()

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            HTTPProtocol, args.host, args.port, backlog=4096, reuse_address=True
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"fake upstream on http://{args.host}:{args.port} (pid {os.getpid()})", flush=True)
        async with server:
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
