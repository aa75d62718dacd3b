"""Hold many slow streams open at once against a gateway and check every one of them.

Each stream is one HTTP/1.1 connection (`Connection: close`) asking for N chunks with a delay
between them (`bench_chunks` / `bench_delay_ms`, which the gateway passes through to
bench/fake_upstream.py). A stream counts as good when it answered 200, delivered at least N
`data:` frames, ended with `data: [DONE]` and carried no error event. Prints one JSON line.

    python bench/slow_streams.py --url http://127.0.0.1:8000/v1/chat/completions --key ok-... \
        --streams 1000 --chunks 300 --delay-ms 100 --ramp 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from urllib.parse import urlsplit


class Stats:
    def __init__(self) -> None:
        self.open = 0  # streams whose response headers arrived and that have not ended
        self.peak_open = 0
        self.ok = 0
        self.failures: dict[str, int] = {}
        self.first_byte: list[float] = []
        self.durations: list[float] = []

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


def _dechunk(raw: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(raw[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


class StreamClient(asyncio.Protocol):
    """One stream on one connection; cheap per chunk (no task or timer per read)."""

    def __init__(self, request: bytes, stats: Stats, chunks: int, done: asyncio.Future):
        self.request = request
        self.stats = stats
        self.chunks = chunks
        self.done = done
        self.started = time.monotonic()
        self.head: bytes | None = None
        self.parts: list[bytes] = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if self.head is None:
            self.parts.append(data)
            buffered = b"".join(self.parts)
            end = buffered.find(b"\r\n\r\n")
            if end < 0:
                self.parts = [buffered]
                return
            self.head = buffered[:end]
            self.parts = [buffered[end + 4 :]]
            self.stats.open += 1
            self.stats.peak_open = max(self.stats.peak_open, self.stats.open)
            self.stats.first_byte.append(time.monotonic() - self.started)
        else:
            self.parts.append(data)

    def connection_lost(self, exc):
        if self.head is not None:
            self.stats.open -= 1
        if not self.done.done():
            self.done.set_result(exc)

    def verdict(self, exc) -> None:
        stats = self.stats
        if self.head is None:
            stats.fail("not served before deadline" if exc == "deadline" else "no response")
            return
        if exc == "deadline":
            stats.fail("timeout (deadline)")
            return
        status = int(self.head.split(b" ", 2)[1])
        raw = b"".join(self.parts)
        if b"transfer-encoding: chunked" in self.head.lower():
            raw = _dechunk(raw)
        if status != 200:
            stats.fail(f"status {status}")
            return
        frames = [f for f in raw.split(b"\n\n") if f.strip()]
        data_frames = [f for f in frames if f.startswith(b"data: ")]
        if any(b'"error"' in f for f in data_frames):
            stats.fail("error event")
        elif not data_frames or data_frames[-1].strip() != b"data: [DONE]":
            stats.fail("no [DONE]")
        elif len(data_frames) < self.chunks:
            stats.fail("missing chunks")
        else:
            stats.ok += 1
            stats.durations.append(time.monotonic() - self.started)


async def one_stream(host, port, path, key, body: bytes, stats: Stats, chunks: int, deadline):
    loop = asyncio.get_running_loop()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    done = loop.create_future()
    client = StreamClient(request, stats, chunks, done)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: client, host, port), 30)
    except (OSError, TimeoutError) as exc:
        stats.fail(type(exc).__name__)
        return
    try:
        exc = await asyncio.wait_for(done, max(deadline - time.monotonic(), 0.01))
    except TimeoutError:
        exc = "deadline"
        client.transport.abort()
    client.verdict(exc)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args) -> dict:
    url = urlsplit(args.url)
    body = json.dumps(
        {
            "model": args.model,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a long story"}],
            "bench_chunks": args.chunks,
            "bench_delay_ms": args.delay_ms,
        }
    ).encode()
    stats = Stats()
    expected = args.chunks * args.delay_ms / 1000
    deadline = time.monotonic() + args.ramp + expected + args.grace
    keys = args.key.split(",")  # several keys: streams take them in turn
    tasks = []
    began = time.monotonic()
    for i in range(args.streams):
        target = began + args.ramp * i / args.streams
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.create_task(
                one_stream(
                    url.hostname,
                    url.port,
                    url.path,
                    keys[i % len(keys)],
                    body,
                    stats,
                    args.chunks,
                    deadline,
                )
            )
        )
    await asyncio.gather(*tasks)
    return {
        "streams": args.streams,
        "ok": stats.ok,
        "failed": sum(stats.failures.values()),
        "failures": stats.failures,
        "peak_open": stats.peak_open,
        "first_byte_p50_ms": round(1000 * (_pct(stats.first_byte, 0.5) or 0), 1),
        "first_byte_p99_ms": round(1000 * (_pct(stats.first_byte, 0.99) or 0), 1),
        "duration_p50_s": round(_pct(stats.durations, 0.5) or 0, 2),
        "duration_max_s": round(max(stats.durations, default=0), 2),
        "expected_s": expected,
        "wall_s": round(time.monotonic() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="", help="API key, or several separated by commas")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which streams open")
    parser.add_argument(
        "--grace", type=float, default=15.0, help="seconds allowed past the ideal end"
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.streams + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    print("SLOW_JSON " + json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
