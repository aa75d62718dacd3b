"""In-process micro-benchmark of stream relaying: CPU µs per upstream chunk.

Feeds recorded-shape provider streams (one SSE event per upstream read, as a live stream arrives)
through each relay, and times them with time.process_time (the CPU of every thread of this process,
so a reader thread counts too). Two layers:

- relay: what the relay itself costs per chunk (SSE framing, metering, the bytes it writes);
- stream: the whole of `streaming.stream_response` around it (reader thread, queue, generator),
  against an in-memory upstream response, with settlement stubbed out.

    .venv/bin/python bench/relay_bench.py                    # this tree
    .venv/bin/python bench/relay_bench.py --baseline 988d4a4  # and that commit, side by side

`--baseline REV` exports REV with `git archive` into a temporary directory and runs this same script
there (it speaks both relay interfaces: `on_event(Event)` before the byte relays, `feed(bytes)`
after), so both columns come from one run on one machine.

Figures of the change that made same-dialect relays pass bytes (2-core workplace VM, best of 15;
988d4a4 is the relay before it; `bench/README.md` has the table and what it means):

| stream | relay µs/chunk 988d4a4 | after | stream µs/chunk 988d4a4 | after |
| --- | ---: | ---: | ---: | ---: |
| chat 20, usage asked | 38.4 | 15.6 | 57.8 | 22.9 |
| chat 300, usage asked | 38.8 | 14.0 | 43.7 | 16.2 |
| anthropic 20 | 31.3 | 14.9 | 45.2 | 21.3 |
| gemini sse 20 | 43.0 | 15.1 | 60.7 | 22.2 |
"""

# ruff: noqa: S603, S607 (runs git and this script, on this checkout)
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Answer text as models write it: mostly ASCII words, now and then a line break (a JSON escape on
# the wire) or a non-ASCII letter.
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it naps in the café sun.\n"
WORDS = SENTENCE.split(" ")
CREATED = 1_764_000_000


def _piece(i: int) -> str:
    word = WORDS[i % len(WORDS)]
    return word if word.endswith("\n") else word + " "


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def openai_chat(chunks: int) -> list[bytes]:
    """OpenAI Chat Completions with stream_options.include_usage, as OpenAI sends it."""
    base = {
        "id": "chatcmpl-CDbench0000000000000000000",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559",
    }

    def chunk(delta, finish=None, **extra):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {**base, "choices": [choice], "usage": None, **extra}
        return f"data: {_dumps(body)}\n\n".encode()

    out = [chunk({"role": "assistant", "content": "", "refusal": None}, obfuscation="Zq3Xb")]
    out += [chunk({"content": _piece(i)}, obfuscation="k2Yw") for i in range(chunks)]
    out.append(chunk({}, "stop", obfuscation="Q1"))
    usage = {
        "prompt_tokens": 19,
        "completion_tokens": chunks,
        "total_tokens": 19 + chunks,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    out.append(f"data: {_dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return out


def openai_responses(chunks: int) -> list[bytes]:
    def event(kind, seq, **fields):
        return f"event: {kind}\ndata: {_dumps({'type': kind, 'sequence_number': seq, **fields})}\n\n".encode()

    response = {
        "id": "resp_bench",
        "object": "response",
        "created_at": CREATED,
        "status": "in_progress",
        "model": "gpt-5-mini-2025-08-07",
        "output": [],
        "usage": None,
    }
    item = {"id": "msg_bench", "type": "message", "status": "in_progress", "role": "assistant"}
    out = [
        event("response.created", 0, response=response),
        event("response.in_progress", 1, response=response),
        event("response.output_item.added", 2, output_index=0, item={**item, "content": []}),
        event(
            "response.content_part.added",
            3,
            item_id="msg_bench",
            output_index=0,
            content_index=0,
            part={"type": "output_text", "annotations": [], "text": ""},
        ),
    ]
    text = ""
    for i in range(chunks):
        text += _piece(i)
        out.append(
            event(
                "response.output_text.delta",
                4 + i,
                item_id="msg_bench",
                output_index=0,
                content_index=0,
                delta=_piece(i),
                logprobs=[],
                obfuscation="aB3",
            )
        )
    seq = 4 + chunks
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    done_item = {**item, "status": "completed", "content": [part]}
    out += [
        event(
            "response.output_text.done",
            seq,
            item_id="msg_bench",
            output_index=0,
            content_index=0,
            text=text,
            logprobs=[],
        ),
        event(
            "response.content_part.done",
            seq + 1,
            item_id="msg_bench",
            output_index=0,
            content_index=0,
            part=part,
        ),
        event("response.output_item.done", seq + 2, output_index=0, item=done_item),
        event(
            "response.completed",
            seq + 3,
            response={
                **response,
                "status": "completed",
                "output": [done_item],
                "usage": {
                    "input_tokens": 19,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": chunks,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 19 + chunks,
                },
            },
        ),
    ]
    return out


def anthropic_messages(chunks: int) -> list[bytes]:
    def event(kind, **fields):
        return f"event: {kind}\ndata: {_dumps({'type': kind, **fields})}\n\n".encode()

    message = {
        "model": "claude-haiku-4-5-20251001",
        "id": "msg_01Bench",
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 19,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
    out = [
        event("message_start", message=message),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        b'event: ping\ndata: {"type": "ping"}\n\n',
    ]
    out += [
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": _piece(i)})
        for i in range(chunks)
    ]
    out += [
        event("content_block_stop", index=0),
        event(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": chunks},
        ),
        event("message_stop"),
    ]
    return out


def gemini_generate(chunks: int) -> list[bytes]:
    """Gemini streamGenerateContent?alt=sse: counts on every chunk, \\r\\n line endings."""
    out = []
    for i in range(chunks):
        candidate = {"content": {"parts": [{"text": _piece(i)}], "role": "model"}, "index": 0}
        usage = {"promptTokenCount": 19, "totalTokenCount": 19 + i, "candidatesTokenCount": i}
        if i == chunks - 1:
            candidate["finishReason"] = "STOP"
            usage = {
                "promptTokenCount": 19,
                "candidatesTokenCount": chunks,
                "totalTokenCount": 19 + chunks + 7,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 19}],
                "thoughtsTokenCount": 7,
            }
        body = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-3.5-flash-lite",
            "responseId": "bench-gemini-response",
        }
        out.append(f"data: {_dumps(body)}\r\n\r\n".encode())
    return out


def _model(provider: str, model_id: str):
    from app.proxy.metering import PricedModel

    prices = {"input": 165_000_000, "cache_read": 82_500_000, "output": 660_000_000}
    return PricedModel(provider, model_id, model_id, 128_000, 16_384, {0: prices})


def cases():
    """(name, relay factory, upstream chunks, client dialect)."""
    from app.proxy import anthropic, gemini, openai
    from app.proxy.translate_anthropic import MessagesToChat
    from app.proxy.translate_gemini import GenerateToChat

    gpt = _model("openai", "gpt-4o-mini")
    claude = _model("anthropic", "claude-haiku-4-5")
    flash = _model("google", "gemini-3.5-flash-lite")
    return [
        (
            "chat 20, usage asked",
            lambda: openai.ChatRelay(gpt, client_wants_usage=True),
            openai_chat(20),
            "openai",
        ),
        (
            "chat 20, usage not asked",
            lambda: openai.ChatRelay(gpt, client_wants_usage=False),
            openai_chat(20),
            "openai",
        ),
        (
            "chat 300, usage asked",
            lambda: openai.ChatRelay(gpt, client_wants_usage=True),
            openai_chat(300),
            "openai",
        ),
        ("responses 20", lambda: openai.ResponsesRelay(gpt), openai_responses(20), "openai"),
        ("responses 300", lambda: openai.ResponsesRelay(gpt), openai_responses(300), "openai"),
        (
            "anthropic 20",
            lambda: anthropic.MessagesRelay(claude),
            anthropic_messages(20),
            "anthropic",
        ),
        (
            "anthropic 300",
            lambda: anthropic.MessagesRelay(claude),
            anthropic_messages(300),
            "anthropic",
        ),
        (
            "gemini sse 20",
            lambda: gemini.GenerateRelay(flash, as_sse=True),
            gemini_generate(20),
            "google",
        ),
        (
            "gemini sse 300",
            lambda: gemini.GenerateRelay(flash, as_sse=True),
            gemini_generate(300),
            "google",
        ),
        (
            "gemini array 20",
            lambda: gemini.GenerateRelay(flash, as_sse=False),
            gemini_generate(20),
            "google",
        ),
        (
            "anthropic->chat 20 (translated)",
            lambda: MessagesToChat(claude, client_wants_usage=True),
            anthropic_messages(20),
            "openai",
        ),
        (
            "gemini->chat 20 (translated)",
            lambda: GenerateToChat(flash, client_wants_usage=True),
            gemini_generate(20),
            "openai",
        ),
    ]


def relay_once(make_relay, chunks: list[bytes]) -> int:
    """One stream through the relay alone; returns the bytes written (so nothing is optimised out)."""
    relay = make_relay()
    written = 0
    if hasattr(relay, "feed"):
        for chunk in chunks:
            written += len(relay.feed(chunk))
        written += len(relay.end())
        return written
    from app.proxy.sse import SSEParser  # the interface before the byte relays

    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            written += sum(map(len, relay.on_event(event)))
    for event in parser.flush():
        written += sum(map(len, relay.on_event(event)))
    written += sum(map(len, relay.on_end()))
    return written


class _Upstream:
    """What stream_response needs of a requests.Response: the chunks, and close()."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks
        self.raw = SimpleNamespace()

    def iter_content(self, chunk_size=None):
        return iter(self._chunks)

    def close(self):
        pass


def stream_once(flask_app, make_relay, chunks: list[bytes], dialect: str) -> int:
    from app.proxy import streaming

    exchange = SimpleNamespace(first_token_at=None, dialect=dialect)
    with flask_app.app_context():
        response = streaming.stream_response(
            exchange,
            _Upstream(chunks),
            make_relay(),
            drain_on_disconnect=False,
            keepalives=True,
            headers={},
        )
    written = sum(len(piece) for piece in response.response)
    response.close()
    return written


def timed(fn, chunks: int, repeats: int, rounds: int) -> float:
    """Best of `rounds` of `repeats` calls: CPU µs per upstream chunk."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        for _ in range(repeats):
            fn()
        best = min(best, (time.process_time() - start) / (repeats * chunks) * 1e6)
    return best


def measure(rounds: int) -> dict[str, dict[str, float]]:
    from flask import Flask

    from app.proxy import streaming

    streaming.settle = lambda *args, **kwargs: 0  # no database here: settlement is not measured
    flask_app = Flask("relay_bench")
    flask_app.config.update(UPSTREAM_READ_TIMEOUT=300, SSE_KEEPALIVE_SECONDS=15)
    results = {}
    for name, make_relay, chunks, dialect in cases():
        repeats = max(3, 6000 // len(chunks))
        relay_us = timed(
            lambda m=make_relay, c=chunks: relay_once(m, c), len(chunks), repeats, rounds
        )
        stream_us = timed(
            lambda m=make_relay, c=chunks, d=dialect: stream_once(flask_app, m, c, d),
            len(chunks),
            max(3, repeats // 4),
            rounds,
        )
        results[name] = {"relay": relay_us, "stream": stream_us}
    return results


def baseline(revision: str, rounds: int) -> dict[str, dict[str, float]]:
    """Run this script against `revision`, exported into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "app"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        script = Path(tmp) / "relay_bench.py"
        script.write_text(Path(__file__).read_text())
        out = subprocess.run(
            [sys.executable, str(script), "--json", "--rounds", str(rounds)],
            check=True,
            capture_output=True,
            cwd=tmp,
            text=True,
            env={**os.environ, "PYTHONPATH": tmp},
        ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision")
    parser.add_argument("--rounds", type=int, default=15, help="best of this many rounds")
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args()
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            results = measure(args.rounds)
        print(json.dumps(results))
        return
    before = baseline(args.baseline, args.rounds) if args.baseline else None
    after = measure(args.rounds)
    if before:
        print(
            f"| stream | relay µs/chunk {args.baseline} | this tree | stream µs/chunk {args.baseline} | this tree |"
        )
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, now in after.items():
            old = before.get(name, {"relay": float("nan"), "stream": float("nan")})
            print(
                f"| {name} | {old['relay']:.1f} | {now['relay']:.1f} | "
                f"{old['stream']:.1f} | {now['stream']:.1f} |"
            )
    else:
        print("| stream | relay µs/chunk | stream µs/chunk |")
        print("| --- | ---: | ---: |")
        for name, now in after.items():
            print(f"| {name} | {now['relay']:.1f} | {now['stream']:.1f} |")


if __name__ == "__main__":
    main()
